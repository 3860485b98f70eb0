from __future__ import annotations

from django.apps import AppConfig


class CoreConfig(AppConfig):
    """The bottom of FedML's app graph: the error type, its HTTP mapping, strict input fields, the
    JSON parser and OpenAPI helpers. It imports no other FedML app."""

    default_auto_field = "django.db.models.BigAutoField"
    name = "core"
    verbose_name = "Core"

    def ready(self) -> None:
        from core import checks  # noqa: F401 - registers FedML's system checks
