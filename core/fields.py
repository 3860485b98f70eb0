"""Input checks shared by the HTTP API and the admin. Unknown fields are refused by name."""

from __future__ import annotations

import re
from typing import Any

from rest_framework import serializers

from core.errors import InvalidInput

_COUNT = re.compile(r"[0-9]{1,18}", re.ASCII)


def parse_count(value: str, *, field: str, minimum: int = 0) -> int:
    """A query-string sequence number or limit: ASCII digits that fit a bigint. Python's int()
    would also take "１２", "1_000" and numbers no database column holds."""
    if not _COUNT.fullmatch(value) or int(value) < minimum:
        raise InvalidInput(f"{field} must be a whole number >= {minimum}, got {value[:40]!r}", field=field)
    return int(value)


class StrictSerializer(serializers.Serializer):
    def run_validation(self, data: Any = serializers.empty) -> Any:
        if data is None:
            raise serializers.ValidationError({"body": "expected a JSON object"})
        return super().run_validation(data)

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, dict):
            raise serializers.ValidationError({"body": "expected a JSON object"})
        unknown = sorted(set(data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError(
                {unknown[0]: f"unknown field (allowed: {', '.join(sorted(self.fields))})"}
            )
        return super().to_internal_value(data)


class StrictBoolean(serializers.BooleanField):
    """JSON true/false only: "yes", 1 or "false" are mistakes worth a 400."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class StrictChar(serializers.CharField):
    """A JSON string only: 7 where a name belongs is a mistake worth a 400."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictInteger(serializers.IntegerField):
    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class ExtraArgs(serializers.ListField):
    child = serializers.CharField(max_length=1000, allow_blank=False, trim_whitespace=False)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(required=False, max_length=32, default=list, **kwargs)


class ScopedInput(StrictSerializer):
    """A control request may name its project and say whose it is (the dashboard does);
    `user_id` is checked against the caller, never trusted (orchestration.scoping)."""

    project_id = serializers.UUIDField(required=False, allow_null=True)
    user_id = serializers.UUIDField(required=False, allow_null=True)


def validated_body(serializer: type[StrictSerializer], request: Any) -> dict[str, Any]:
    """A request's JSON body checked by `serializer` (a 400 naming the field otherwise)."""
    data = serializer(data=request.data)
    data.is_valid(raise_exception=True)
    return dict(data.validated_data)
