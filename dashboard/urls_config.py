"""URLs of the provider, model and configuration pages."""

from django.urls import URLPattern, path

from dashboard.views import config, providers

urlpatterns: list[URLPattern] = [
    path("providers/", providers.provider_list, name="providers"),
    path("providers/new/", providers.provider_new, name="provider-new"),
    path("providers/<int:pk>/edit/", providers.provider_edit, name="provider-edit"),
    path("providers/<int:pk>/delete/", providers.provider_delete, name="provider-delete"),
    path("providers/<int:pk>/toggle/", providers.provider_toggle, name="provider-toggle"),
    path("providers/<int:pk>/test/", providers.provider_test, name="provider-test"),
    path("providers/<int:pk>/models/new/", providers.model_new, name="model-new"),
    path("models/<int:pk>/edit/", providers.model_edit, name="model-edit"),
    path("models/<int:pk>/delete/", providers.model_delete, name="model-delete"),
    path("models/<int:pk>/toggle/", providers.model_toggle, name="model-toggle"),
    path("config/", config.config_page, name="config"),
    path("config/preview/", config.config_preview, name="config-preview"),
    path("config/apply/", config.config_apply, name="config-apply"),
    path("config/download/", config.config_download, name="config-download"),
]
