"""Which nodes and projects this supervisor serves.

`FEDML_SUPERVISOR_SCOPE=all` (the default): every project in the database, as on one host that
runs every project's SuperLink and SuperNodes. `configured`: only the configured coordinator and
participant nodes and PROJECT_SLUG, for a site whose supervisor shares a database with others.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings

from accounts import services as accounts_services


def _configured_nodes() -> tuple[str, ...] | None:
    if settings.SUPERVISOR_SCOPE == "all":
        return None
    return (settings.COORDINATOR_NODE_ID, settings.PARTICIPANT_NODE_ID)


def _configured_projects() -> tuple[str, ...] | None:
    return None if settings.SUPERVISOR_SCOPE == "all" else (settings.PROJECT_SLUG,)


@dataclass(frozen=True)
class Scope:
    """The work a supervisor claims; None serves every node or project. Named by the configured
    external ids and project slug, not by row ids: nodes deleted and made again (a restored
    database, the test suite's flushes) are still served, at no query cost. Immutable, so every
    thread may read it.
    """

    node_external_ids: tuple[str, ...] | None = field(default_factory=_configured_nodes)
    project_slugs: tuple[str, ...] | None = field(default_factory=_configured_projects)

    def ensure_rows(self) -> None:
        """The configured project and nodes exist from the supervisor's start (health and the APIs show them)."""
        accounts_services.coordinator_node_ensure()
        accounts_services.participant_node_ensure()
