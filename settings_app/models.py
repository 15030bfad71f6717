import re
import secrets

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinLengthValidator, MinValueValidator, RegexValidator
from django.db import models
from django.utils.html import escape
from solo.models import SingletonModel

from . import freshness
from .redaction import is_secret_key

# A generated key is this long or longer; a shorter key (e.g. the 8-character key of the WP Fusion site being
# replaced) is accepted but shown as weak.
STRONG_ACCESS_KEY_LENGTH = 32
MIN_ACCESS_KEY_LENGTH = 8


def generate_access_key() -> str:
    return secrets.token_urlsafe(32)  # 43 url-safe characters


class WebhookSettings(SingletonModel):
    access_key = models.CharField(
        max_length=128,
        validators=[
            MinLengthValidator(MIN_ACCESS_KEY_LENGTH),
            # The key travels in a URL query string: keep it to characters that need no escaping.
            RegexValidator(r"^[A-Za-z0-9_.~-]+$", "Use letters, digits and - _ . ~ only."),
        ],
        help_text=(
            "Sent by Customer.io with every webhook: in a header (recommended: Authorization: Bearer KEY, or "
            "X-Access-Key: KEY), or as access_key=... in the URL (WP Fusion's format). Changed only by a rotation, "
            "which keeps the previous key valid for a grace period."
        ),
    )
    # Keys replaced by "Regenerate" that still work until their grace period ends: [{"key", "valid_until"}].
    # Never shown in the admin (see settings_app.access_keys).
    previous_access_keys = models.JSONField(default=list, blank=True, editable=False)
    return_password = models.BooleanField(
        "return password",
        default=True,
        help_text="Write a generated password back to a Customer.io attribute when a webhook creates a user.",
    )
    return_password_field = models.CharField(
        "return password field",
        max_length=150,
        blank=True,
        help_text="The Customer.io attribute that receives the generated password. Nothing is returned while empty.",
    )
    send_welcome_email = models.BooleanField(
        default=False, help_text="Email new users a set-password link even without send_notification=true."
    )

    class UsernameFormat(models.TextChoices):
        EMAIL = "email", "Email address"
        FLNAME = "flname", "FirstnameLastname"
        FNAMENUM = "fnamenum", "Firstname followed by a random number"

    username_format = models.CharField(max_length=16, choices=UsernameFormat.choices, default=UsernameFormat.EMAIL)
    process_in_background = models.BooleanField(
        default=False, help_text="Answer webhooks at once and process them in the background worker."
    )

    # The site -> Customer.io direction (users.services.outbox): what the site tells Customer.io by itself.
    push_profiles = models.BooleanField(
        "send profile changes",
        default=True,
        help_text=(
            "Tell Customer.io when a user is created on the site, changes a field mapped to push, changes their email "
            "or role, or logs in. Needs the Track API credentials; changes Customer.io itself made are never sent "
            "back."
        ),
    )
    push_staff = models.BooleanField(
        "send staff accounts",
        default=False,
        help_text="Also send staff and superuser accounts' profiles and events to Customer.io.",
    )
    event_login = models.BooleanField("login", default=False, help_text="Send a login event each time a user logs in.")
    event_password_reset = models.BooleanField(
        "password reset", default=False, help_text="Send a password_reset event when a user sets a new password."
    )
    event_tag_applied = models.BooleanField(
        "tag applied on the site",
        default=False,
        help_text="Send a tag_applied_on_site event for each tag applied on the site (apply_tags, the admin).",
    )
    event_access_refused = models.BooleanField(
        "access refused",
        default=False,
        help_text="Send an access_refused event (with the rule) when a logged-in user is refused a page by a rule.",
    )
    return_login_link = models.BooleanField(
        "return a login link",
        default=False,
        help_text=(
            "Write a single-use login link to a Customer.io attribute when a webhook creates a user, so the "
            "journey's email can offer it. Never for staff or superusers."
        ),
    )
    return_login_link_field = models.CharField(
        "login link field",
        max_length=150,
        blank=True,
        help_text="The Customer.io attribute that receives the link. Nothing is returned while empty.",
    )
    return_login_link_to_existing = models.BooleanField(
        "also for existing users",
        default=False,
        help_text="Also return a fresh link when an add webhook finds the user already on the site.",
    )
    login_link_lifetime_hours = models.PositiveIntegerField(
        "login link lifetime (hours)",
        default=72,
        validators=[MinValueValidator(1), MaxValueValidator(24 * 30)],
        help_text="A link stops working after this long, after it is used once, or when the password changes.",
    )

    class Meta:
        verbose_name = "webhook settings"

    def __str__(self):
        return "Webhook settings"

    @classmethod
    def load(cls) -> "WebhookSettings":
        """The settings row, read fresh from the database (no per-process cache, so a changed key takes effect in
        every process at once). The access key is generated on the first read."""
        settings = cls.get_solo()
        if not settings.access_key:
            # Conditional update: when two processes race on the first read, one key wins and both see it.
            cls.objects.filter(pk=settings.pk, access_key="").update(access_key=generate_access_key())
            settings.refresh_from_db()
        return settings

    @classmethod
    def cached(cls) -> "WebhookSettings":
        """The settings row for the hot path (webhook view, account rules): held per process and reloaded within a
        second of a change anywhere (see settings_app.freshness). Read-only: writers use load()."""
        return _webhook_settings.get()

    @property
    def access_key_is_weak(self) -> bool:
        return len(self.access_key) < STRONG_ACCESS_KEY_LENGTH

    @property
    def return_password_misconfigured(self) -> bool:
        return self.return_password and not self.return_password_field.strip()

    def clean(self):
        super().clean()
        field_name = self.return_login_link_field.strip()
        if not field_name:
            return
        # The link would overwrite what names the person, their sign-up time, the returned password or a field the
        # site keeps in step: refused before it is saved.
        taken = {"email", "id", "cio_id", "created_at", self.return_password_field.strip()}
        taken |= {mapping.cio_attribute for mapping in FieldMapping.objects.filter(active=True)}
        if field_name in taken:
            raise ValidationError(
                {
                    "return_login_link_field": f"{field_name} is already used (a person's identity, the returned "
                    "password or a field mapping): choose an attribute of its own, e.g. login_link."
                }
            )

    @property
    def returns_login_links(self) -> bool:
        return self.return_login_link and bool(self.return_login_link_field.strip())


# What a FieldMapping may write to. "meta.<key>" stores the attribute in User.meta under <key>.
USER_FIELD_CHOICES = [
    ("email", "Email"),
    ("first_name", "First name"),
    ("last_name", "Last name"),
    ("username", "Username (from user_login)"),
    ("password", "Password (from user_pass)"),
    ("role", "Role"),
    # The site's own record of the account: sent to Customer.io, never written from it.
    ("id", "Site user id (push only)"),
    ("date_joined", "Registered (push only)"),
    ("last_login", "Last login (push only)"),
]
FIRST_CLASS_USER_FIELDS = {value for value, _ in USER_FIELD_CHOICES}
PUSH_ONLY_USER_FIELDS = {"id", "date_joined", "last_login"}
META_FIELD_PATTERN = re.compile(r"^meta\.[A-Za-z0-9_.-]{1,100}$")


def validate_user_field(value: str) -> None:
    if value in FIRST_CLASS_USER_FIELDS or META_FIELD_PATTERN.match(value):
        return
    raise ValidationError(
        f"{value!r} is not a user field: use one of {', '.join(sorted(FIRST_CLASS_USER_FIELDS))} "
        "or meta.<key> (letters, digits, _ . -)."
    )


class FieldMapping(models.Model):
    """Which Customer.io attribute fills which user field (pull), which user field is sent to which attribute (push),
    or both."""

    class Direction(models.TextChoices):
        PULL = "pull", "Pull: Customer.io → site"
        PUSH = "push", "Push: site → Customer.io"
        BOTH = "both", "Both ways"

    cio_attribute = models.CharField("Customer.io attribute", max_length=150)
    user_field = models.CharField(
        max_length=120,
        validators=[validate_user_field],
        # Help texts are HTML in Django's forms: the angle brackets must be escaped to be seen.
        help_text=escape(
            "email, first_name, last_name, username, password, role, meta.<key>; to push only: id, date_joined, "
            "last_login"
        ),
    )
    active = models.BooleanField(default=True)
    # Pull is what every mapping meant before directions existed, so rows made then keep their meaning.
    direction = models.CharField(max_length=4, choices=Direction.choices, default=Direction.PULL)

    class Meta:
        ordering = ["user_field", "cio_attribute"]
        constraints = [models.UniqueConstraint(fields=["cio_attribute", "user_field"], name="fieldmapping_unique_pair")]

    def __str__(self):
        return f"{self.cio_attribute} → {self.user_field}"

    @property
    def pulls(self) -> bool:
        return self.direction in (self.Direction.PULL, self.Direction.BOTH)

    @property
    def pushes(self) -> bool:
        return self.direction in (self.Direction.PUSH, self.Direction.BOTH)

    def clean(self):
        super().clean()
        if self.user_field.startswith("meta.") and is_secret_key(self.cio_attribute):
            # User.meta is shown in the admin and logged as meta data: no place for a password.
            raise ValidationError({"user_field": f"{self.cio_attribute} looks like a password: it cannot go to meta."})
        if self.pushes and (self.user_field == "password" or is_secret_key(self.cio_attribute)):
            # The site holds only a password's hash, and nothing secret is ever sent on the site's initiative.
            raise ValidationError({"direction": "A password is never pushed to Customer.io: use Pull."})
        if self.pulls and self.user_field in PUSH_ONLY_USER_FIELDS:
            raise ValidationError({"direction": f"{self.user_field} is the site's own record: it can only be pushed."})
        if self.active and self.pushes:
            # Two fields pushed to one attribute would make what Customer.io keeps depend on row order.
            clash = FieldMapping.objects.filter(active=True, cio_attribute=self.cio_attribute).exclude(pk=self.pk)
            if any(other.pushes for other in clash):
                raise ValidationError(
                    {"cio_attribute": f"Another active mapping already pushes to {self.cio_attribute}."}
                )
        if self.active and self.pulls and not self.user_field.startswith("meta."):
            # Two active sources for one first-class field would make the result depend on row order.
            clash = FieldMapping.objects.filter(active=True, user_field=self.user_field).exclude(pk=self.pk)
            if any(other.pulls for other in clash):
                raise ValidationError(
                    {"user_field": f"Another active mapping already fills {self.user_field}: deactivate it first."}
                )


def cached_field_mappings() -> tuple[FieldMapping, ...]:
    """Every field mapping (active or not) in primary-key order, for the hot path: held per process and reloaded
    within a second of a change anywhere (see settings_app.freshness). Read-only."""
    return _field_mappings.get()


_webhook_settings = freshness.Memo("webhook_settings", WebhookSettings.load)
_field_mappings = freshness.Memo("field_mappings", lambda: tuple(FieldMapping.objects.order_by("pk")))
