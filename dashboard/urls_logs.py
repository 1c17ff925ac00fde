"""URLs of the request history and API-key pages."""

from django.urls import URLPattern, path

from dashboard.views import keys, requests

urlpatterns: list[URLPattern] = [
    path("requests/", requests.page, name="requests"),
    path("requests/results/", requests.results, name="requests-results"),
    path("requests/<int:pk>/", requests.detail, name="request-detail"),
    path("keys/", keys.page, name="keys"),
    path("keys/new/", keys.create, name="key-create"),
    path("keys/<int:pk>/", keys.detail, name="key-detail"),
    path("keys/<int:pk>/revoke/", keys.revoke, name="key-revoke"),
    path("keys/<int:pk>/limits/", keys.limits, name="key-limits"),
]
