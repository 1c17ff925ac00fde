"""Django URLs: the admin and (later) the dashboard. /v1 and /health never reach here."""

from django.contrib import admin
from django.urls import path

urlpatterns = [
    path("admin/", admin.site.urls),
]
