"""URLs of the provider, model and configuration pages."""

urlpatterns: list = []
