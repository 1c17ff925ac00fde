from django.contrib.auth import views as auth_views
from django.urls import path

from dashboard import urls_config, urls_logs
from dashboard.throttle import ThrottledAuthenticationForm
from dashboard.views import overview, pending

app_name = "dashboard"

urlpatterns = [
    path("", overview.page, name="overview"),
    path("live/", overview.live_partial, name="overview-live"),
    path(
        "login/",
        auth_views.LoginView.as_view(
            redirect_authenticated_user=True, authentication_form=ThrottledAuthenticationForm
        ),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("config/pending/", pending.pending_page, name="pending"),
    path("config/pending/apply/", pending.pending_apply, name="pending-apply"),
    path("config/pending/discard/", pending.pending_discard, name="pending-discard"),
]

urlpatterns += urls_logs.urlpatterns + urls_config.urlpatterns
