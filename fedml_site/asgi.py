"""ASGI entry point: HTTP through Django, websockets through Channels."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fedml_site.settings")

django_asgi_app = get_asgi_application()

# Imported after Django is set up: they load models.
from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from accounts.middleware import BearerSubprotocolMiddleware, TrustedOriginValidator  # noqa: E402
from orchestration.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # The Origin must be FedML's own (scheme, host and port) or a trusted one, as Django's CSRF check.
        "websocket": TrustedOriginValidator(
            AuthMiddlewareStack(BearerSubprotocolMiddleware(URLRouter(websocket_urlpatterns)))
        ),
    }
)
