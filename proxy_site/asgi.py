"""ASGI entry point: the gateway's own endpoints in front of Django (admin, dashboard)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "proxy_site.settings")
django_app = get_asgi_application()

from gateway.app import GatewayApp  # noqa: E402  (needs Django set up first)

application = GatewayApp(django_app)
