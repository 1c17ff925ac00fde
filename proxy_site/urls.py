"""Django URLs: the admin and the dashboard. /v1 and /health never reach here."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("dashboard/", include("dashboard.urls")),
]
