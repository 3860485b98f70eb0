"""FedML's paths as the API shows them: relative to the directory setting they live in
(`$FEDML_LOG_DIR/superlink.log`), never the server's absolute paths, which tell a caller how the
host is laid out. The rows keep the real paths, and the admin (staff) shows them as they are."""

from __future__ import annotations

import functools
import re
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

# Setting attribute -> the environment variable an operator knows it by.
_ROOTS = {
    "CERTIFICATES_DIR": "$FEDML_CERTIFICATES_DIR",
    "ARTIFACTS_DIR": "$FEDML_ARTIFACTS_DIR",
    "FLWR_HOME_ROOT": "$FEDML_FLWR_HOME",
    "FLOWER_APP_DIR": "$FEDML_FLOWER_APP_DIR",
    "FLOWER_BIN_DIR": "$FEDML_FLOWER_BIN_DIR",
    "LOG_DIR": "$FEDML_LOG_DIR",
    "DATA_DIR": "$FEDML_DATA_DIR",
    "BASE_DIR": "<fedml>",  # the installation: its virtualenv, manage.py, tracebacks
}


@functools.lru_cache(maxsize=1)
def _pattern() -> tuple[re.Pattern[str], dict[str, str]]:
    labels: dict[str, str] = {}
    for name, label in _ROOTS.items():
        path = str(getattr(settings, name, "") or "").rstrip("/")
        if path and path not in labels:
            labels[path] = label
    if not labels:
        return re.compile(r"(?!)"), labels  # nothing to name
    # Longest first, so a directory inside another is named by its own setting; a root only
    # matches whole path components ("/srv/fedml" not in "/srv/fedml2" or "/srv/fedml.old").
    alternatives = "|".join(re.escape(path) for path in sorted(labels, key=len, reverse=True))
    return re.compile(f"(?:{alternatives})(?![\\w-]|\\.[\\w.-])"), labels


@receiver(setting_changed)
def _settings_changed(*, setting: str, **kwargs: Any) -> None:
    if setting in _ROOTS:  # tests point the directories elsewhere
        _pattern.cache_clear()


def public_text(text: str) -> str:
    """`text` with FedML's directories replaced by their setting's name."""
    if not text or "/" not in text:
        return text
    pattern, labels = _pattern()
    return pattern.sub(lambda match: labels[match.group(0)], text)


def public_value(value: Any) -> Any:
    """A JSON value (a session's runtime config) with every string made public_text."""
    if isinstance(value, str):
        return public_text(value)
    if isinstance(value, dict):
        return {key: public_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [public_value(item) for item in value]
    return value
