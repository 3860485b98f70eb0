"""Coordinator HTTP API: control (health, SuperLink, runs) and records (runs, logs, keys)."""

from orchestration.apis.control import (
    CoordinatorHealthApi,
    RunActiveApi,
    RunStartApi,
    RunStopApi,
    SuperlinkStartApi,
    SuperlinkStopApi,
)
from orchestration.apis.records import (
    LogLinesApi,
    NodeEnrollApi,
    NodeRevokeApi,
    RunDetailApi,
    RunLogLinesApi,
    SessionLogLinesApi,
)

__all__ = [
    "CoordinatorHealthApi",
    "LogLinesApi",
    "NodeEnrollApi",
    "NodeRevokeApi",
    "RunActiveApi",
    "RunDetailApi",
    "RunLogLinesApi",
    "RunStartApi",
    "RunStopApi",
    "SessionLogLinesApi",
    "SuperlinkStartApi",
    "SuperlinkStopApi",
]
