"""Writes for people, projects and their nodes, grants, tokens and the audit log."""

from accounts.services.audit import audit_record, audit_refusal_record
from accounts.services.people import person_create_with_user, person_ensure_for_user, person_provision
from accounts.services.projects import (
    coordinator_node_ensure,
    membership_set,
    node_join_decide,
    participant_node_ensure,
    project_create,
    project_ensure_default,
    project_join,
)
from accounts.services.signin import password_signin, refresh_signin, sessions_revoke, signout
from accounts.services.tokens import (
    TOKEN_PREFIX,
    TOKEN_PREFIX_RE,
    api_token_authenticate,
    api_token_create,
    api_token_revoke,
)

__all__ = [
    "TOKEN_PREFIX",
    "TOKEN_PREFIX_RE",
    "api_token_authenticate",
    "api_token_create",
    "api_token_revoke",
    "audit_record",
    "audit_refusal_record",
    "coordinator_node_ensure",
    "membership_set",
    "node_join_decide",
    "project_create",
    "project_join",
    "participant_node_ensure",
    "password_signin",
    "person_create_with_user",
    "person_ensure_for_user",
    "person_provision",
    "project_ensure_default",
    "refresh_signin",
    "sessions_revoke",
    "signout",
]
