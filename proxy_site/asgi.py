"""ASGI entry point: the gateway's own endpoints in front of Django; websockets to Channels.

One Runtime per process is created here and handed to everything that needs it: the
gateway's handlers, and (through the ASGI scope) the dashboard's views and consumers.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proxy_site.settings")
django_app = get_asgi_application()

from gateway.app import GatewayApp  # noqa: E402  (needs Django set up first)
from gateway.runtime import Runtime  # noqa: E402


def build_application(runtime: Runtime | None = None):
    from channels.auth import AuthMiddlewareStack
    from channels.routing import ProtocolTypeRouter, URLRouter
    from channels.security.websocket import AllowedHostsOriginValidator

    from dashboard.routing import websocket_urlpatterns

    gateway = GatewayApp(django_app, runtime or Runtime())
    websockets = gateway.with_runtime(
        AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))
    )
    return ProtocolTypeRouter({"http": gateway, "lifespan": gateway, "websocket": websockets})


application = build_application()
