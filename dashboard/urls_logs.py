"""URLs of the request history and API-key pages."""

urlpatterns: list = []
