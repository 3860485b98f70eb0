"""The API's base view: every control action and every refusal is audited from one place.

Who may do what is decided by accounts.permissions (through orchestration.scoping for the control APIs)."""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework.views import APIView

from accounts.services import audit_record, audit_refusal_record


class AuditedApiView(APIView):
    """Every control action and every refusal goes to the audit log, from one place."""

    audit_action: str | None = None  # set on views that change something

    def permission_denied(self, request: Request, message: str | None = None, code: str | None = None) -> None:
        self._audit(request, outcome="denied", detail={"reason": str(message or "")})
        super().permission_denied(request, message=message, code=code)

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        if self.audit_action and request.method == "POST" and not getattr(self, "_audited", False):
            code = response.status_code
            outcome = "ok" if code < 400 else ("denied" if code in (401, 403) else "error")
            detail = {"status": code}
            if isinstance(getattr(response, "data", None), dict):
                detail.update(
                    {k: response.data[k] for k in ("session_id", "run_id", "field", "detail") if k in response.data}
                )
            self._audit(request, outcome=outcome, detail=detail)
        return super().finalize_response(request, response, *args, **kwargs)

    def _audit(self, request: Request, *, outcome: str, detail: dict[str, Any]) -> None:
        self._audited = True
        record = {
            "actor": getattr(request, "user", None),
            "action": self.audit_action or f"{request.method} {request.path}"[:60],
            "target": request.path,
            "remote_addr": request.META.get("REMOTE_ADDR", ""),
            "via": "api",
            "detail": {k: str(v)[:500] for k, v in detail.items()},
        }
        if outcome == "denied":  # anonymous refusals are recorded in bounded numbers
            audit_refusal_record(**record)
        else:
            audit_record(outcome=outcome, **record)
