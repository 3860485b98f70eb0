"""Which nodes and projects this supervisor serves: the configured coordinator and participant."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.conf import settings

from accounts import services as accounts_services


@dataclass(frozen=True)
class Scope:
    """The work a supervisor claims, named by the configured external ids and project slug, not by
    row ids: nodes deleted and made again (a restored database, the test suite's flushes) are
    still served, at no query cost. Immutable, so every thread may read it.
    """

    node_external_ids: tuple[str, ...] = field(
        default_factory=lambda: (settings.COORDINATOR_NODE_ID, settings.PARTICIPANT_NODE_ID)
    )
    project_slugs: tuple[str, ...] = field(default_factory=lambda: (settings.PROJECT_SLUG,))

    def ensure_rows(self) -> None:
        """The configured project and nodes exist from the supervisor's start (health and the APIs show them)."""
        accounts_services.coordinator_node_ensure()
        accounts_services.participant_node_ensure()
