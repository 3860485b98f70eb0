"""Reads for a participant site."""

from __future__ import annotations

from orchestration.models import Node, NodeSession, SessionKind
from orchestration.selectors import session_latest, session_live_supernodes

__all__ = ["session_latest", "session_live_supernodes", "supernode_latest"]


def supernode_latest(*, node: Node) -> NodeSession | None:
    return session_latest(node=node, kind=SessionKind.SUPERNODE)
