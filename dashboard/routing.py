from django.urls import path

from dashboard.consumers import LiveConsumer

websocket_urlpatterns = [path("dashboard/ws/live/", LiveConsumer.as_asgi())]
