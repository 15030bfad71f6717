from django.apps import apps
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path
from django.views.decorators.csrf import csrf_exempt

from users.forms import SetOrResetPasswordForm
from users.views import PasswordResetConfirmView, account, login_link
from webhooks.health import healthz
from webhooks.intake.reporting import reporting_view
from webhooks.intake.views import home, webhook_view
from webhooks.metrics.views import metrics

# A failure because the database is unavailable is a 503 page (try again shortly), not a 500.
handler500 = "webhooks.outages.server_error"

urlpatterns = [
    # The root answers Customer.io webhooks in WP Fusion's URL format (/?wpf_action=...&access_key=...).
    path("", csrf_exempt(home), name="home"),
    re_path(r"^webhooks/customerio/?$", webhook_view, name="customerio-webhook"),
    # Customer.io's reporting webhook (message events), signed with CUSTOMERIO_REPORTING_SIGNING_KEYS.
    re_path(r"^webhooks/customerio/reporting/?$", reporting_view, name="customerio-reporting-webhook"),
    path(
        "accounts/password_reset/",
        auth_views.PasswordResetView.as_view(form_class=SetOrResetPasswordForm),
        name="password_reset",
    ),
    # Django's own page, which also sends the password_reset event (users.tracking) when it is on.
    path(
        "accounts/reset/<uidb64>/<token>/",
        PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    # For load balancers and uptime monitors: no key, no session, never Customer.io.
    path("healthz", healthz, name="healthz"),
    # For Prometheus: off without METRICS_TOKEN, and only with it (docs/operations.md, "Metrics").
    path("metrics", metrics, name="metrics"),
    # LOGIN_REDIRECT_URL names it; the address is Django's default one, so a login without ?next= never finds a 404.
    path("accounts/profile/", account, name="account"),
    # A single-use login link, as Customer.io's journey emails carry it (users.services.login_links).
    path("accounts/login-link/<str:token>/", login_link, name="login-link"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
]
if apps.is_installed("demo"):  # development only (make run)
    urlpatterns.append(path("", include("demo.urls")))
