"""The Webhook settings page (settings_app's WebhookSettings). Registered here rather than in settings_app because it
shows what the apps above configuration own: the URL of each action in this app's registry, and key changes written
to the users' activity log. Configuration itself depends on nothing above it."""

from django import forms
from django.conf import settings as django_settings
from django.contrib import admin, messages
from django.http import HttpResponseNotAllowed, HttpResponseRedirect
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from solo.admin import SingletonModelAdmin

from settings_app import access_keys
from settings_app.models import WebhookSettings
from users.models import ActivityLog
from users.services.activity import log_activity

from .actions import reporting_url, webhook_urls
from .models import WebhookDelivery

RECENT_KEY_USE = 10


class WebhookSettingsForm(forms.ModelForm):
    """The settings form. The current key is shown but not editable: a form opened before a rotation and saved
    after it would put the rotated-out key back. A key the admin types (e.g. their WP Fusion site's, so existing
    journeys keep working) goes through access_keys.rotate like "Regenerate"."""

    new_access_key = forms.CharField(
        label="Replace it with",
        required=False,
        max_length=WebhookSettings._meta.get_field("access_key").max_length,
        validators=WebhookSettings._meta.get_field("access_key").validators,
        strip=True,
        widget=forms.TextInput(attrs={"autocomplete": "off", "size": 50}),
        help_text=(
            "Leave empty to keep the current key. A key you enter here (at least 8 characters, e.g. your WP Fusion "
            "site's so existing journeys keep working) becomes the current key; the previous one keeps working for "
            "the grace period, as with Regenerate."
        ),
    )

    class Meta:
        model = WebhookSettings
        fields = [
            "access_key",
            "username_format",
            "send_welcome_email",
            "return_password",
            "return_password_field",
            "process_in_background",
            "return_login_link",
            "return_login_link_field",
            "return_login_link_to_existing",
            "login_link_lifetime_hours",
            "push_profiles",
            "push_staff",
            "event_login",
            "event_password_reset",
            "event_tag_applied",
            "event_access_refused",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Shown (to copy), never taken from the browser.
        self.fields["access_key"].disabled = True


@admin.register(WebhookSettings)
class WebhookSettingsAdmin(SingletonModelAdmin):
    change_form_template = "webhooks/webhooksettings_change_form.html"
    form = WebhookSettingsForm
    fieldsets = [
        ("Access", {"fields": ["access_key", "new_access_key"]}),
        ("New users", {"fields": ["username_format", "send_welcome_email"]}),
        ("Return password", {"fields": ["return_password", "return_password_field"]}),
        (
            "Return a login link",
            {
                "fields": [
                    "return_login_link",
                    "return_login_link_field",
                    "return_login_link_to_existing",
                    "login_link_lifetime_hours",
                ]
            },
        ),
        ("Processing", {"fields": ["process_in_background"]}),
        (
            "Site → Customer.io",
            {
                "fields": ["push_profiles", "push_staff"],
                "description": (
                    "What the site tells Customer.io by itself, in the background (needs the Track API credentials). "
                    "Which fields are sent: Field mappings whose direction is Push or Both."
                ),
            },
        ),
        (
            "Events sent to Customer.io",
            {"fields": ["event_login", "event_password_reset", "event_tag_applied", "event_access_refused"]},
        ),
    ]

    def get_urls(self):
        regenerate = path(
            "regenerate-access-key/",
            self.admin_site.admin_view(self.regenerate_access_key_view),
            name="settings_app_webhooksettings_regenerate",
        )
        end_grace = path(
            "end-access-key-grace/",
            self.admin_site.admin_view(self.end_grace_view),
            name="settings_app_webhooksettings_end_grace",
        )
        return [regenerate, end_grace, *super().get_urls()]

    @method_decorator(sensitive_post_parameters("new_access_key", "access_key"))
    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        return super().changeform_view(request, object_id, form_url, extra_context)

    @method_decorator(sensitive_variables("typed_key"))
    def save_model(self, request, obj, form, change):
        # Only the form's own fields are written: the key and the previous keys belong to access_keys.rotate,
        # and a save must not overwrite a rotation that happened since this request read the row.
        obj.save(update_fields=[name for name in form.cleaned_data if name not in ("access_key", "new_access_key")])
        typed_key = form.cleaned_data.get("new_access_key")
        if typed_key and typed_key != obj.access_key:
            _, old_until = access_keys.rotate(obj, new_key=typed_key)
            until = f"{old_until:%Y-%m-%d %H:%M %Z}" if old_until else "now"
            log_activity(
                ActivityLog.Source.ADMIN,
                f"Access key replaced by {request.user.get_username()} with a key they entered; the previous key "
                f"is valid until {until}.",
                level=ActivityLog.Level.NOTICE,
            )

    def get_object(self, request, object_id=None, from_field=None):
        # Through load() so that the first visit generates the access key.
        return WebhookSettings.load()

    def change_view(self, request, object_id=None, form_url="", extra_context=None):
        settings = WebhookSettings.load()
        if request.method == "GET":
            if settings.access_key_is_weak:
                messages.warning(
                    request,
                    "The access key is weak (shorter than 32 characters). Keep it only while Customer.io journeys "
                    "still use it, then regenerate it.",
                )
            if settings.return_password_misconfigured:
                messages.warning(
                    request,
                    "Return Password is on but no Customer.io field is chosen: generated passwords are not returned.",
                )
            if settings.return_login_link and not settings.returns_login_links:
                messages.warning(request, "Return a login link is on but no field is chosen: no link is returned.")
            elif settings.returns_login_links and not django_settings.SITE_BASE_URL:
                messages.warning(
                    request,
                    "Return a login link is on but SITE_BASE_URL is not set: a link in an email must be a full "
                    "address, so none is returned until it is.",
                )
        base_url = None if django_settings.SITE_BASE_URL else request.build_absolute_uri("/")
        current_fingerprint = access_keys.fingerprint(settings.access_key)
        previous = access_keys.previous_keys(settings)
        labels = {current_fingerprint: "current key"}
        labels.update(
            {key.fingerprint: f"previous key (valid until {key.valid_until:%Y-%m-%d %H:%M %Z})" for key in previous}
        )
        extra_context = {
            **(extra_context or {}),
            "allowed_networks": django_settings.WEBHOOK_ALLOWED_NETWORKS.describe(),
            "reporting_url": reporting_url(base_url),
            "reporting_keys": len(django_settings.CUSTOMERIO_REPORTING_SIGNING_KEYS),
            "webhook_urls": webhook_urls(base_url, settings.access_key),
            "header_urls": webhook_urls(base_url, with_key=False),
            "access_key": settings.access_key,
            "current_fingerprint": current_fingerprint,
            "previous_keys": previous,
            "recent_key_use": [
                {**row, "key_label": labels.get(row["fingerprint"], "a key no longer valid")}
                for row in self.recent_key_use()
            ],
        }
        return super().change_view(request, object_id, form_url, extra_context)

    @staticmethod
    def recent_key_use() -> list[dict]:
        """Recent deliveries with the fingerprint of the key each used (never the key)."""
        recent = WebhookDelivery.objects.exclude(access_key_fingerprint="").order_by("-received_at", "-id")
        return [
            {
                "received_at": delivery.received_at,
                "action": delivery.action,
                "contact": delivery.contact,
                "status": delivery.get_status_display(),
                "fingerprint": delivery.access_key_fingerprint,
            }
            for delivery in recent[:RECENT_KEY_USE]
        ]

    def regenerate_access_key_view(self, request):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_change_permission(request):
            return HttpResponseRedirect(reverse("admin:index"))
        _, old_until = access_keys.rotate(WebhookSettings.load())
        until = f"{old_until:%Y-%m-%d %H:%M %Z}" if old_until else "now"
        log_activity(
            ActivityLog.Source.ADMIN,
            f"Access key regenerated by {request.user.get_username()}; the previous key is valid until {until}.",
            level=ActivityLog.Level.NOTICE,
        )
        messages.success(
            request,
            f"A new access key was generated. The previous key keeps working until {until}: "
            "update the journeys in Customer.io before then.",
        )
        return HttpResponseRedirect(reverse("admin:settings_app_webhooksettings_change"))

    def end_grace_view(self, request):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_change_permission(request):
            return HttpResponseRedirect(reverse("admin:index"))
        ended = access_keys.end_grace(WebhookSettings.load())
        log_activity(
            ActivityLog.Source.ADMIN,
            f"{request.user.get_username()} ended the grace period of {ended} previous access key(s).",
            level=ActivityLog.Level.NOTICE,
        )
        messages.success(request, "Previous access keys no longer work. Only the current key is valid.")
        return HttpResponseRedirect(reverse("admin:settings_app_webhooksettings_change"))
