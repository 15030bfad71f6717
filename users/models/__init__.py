from django.contrib.auth.models import AbstractUser, Group
from django.contrib.auth.models import UserManager as DjangoUserManager
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone

from ..emails import EmailAddressField, normalize_email


class Role(models.Model):
    """What WordPress calls a role. It carries Django permissions through its optional group; it never carries
    staff or superuser status."""

    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=150)
    is_default = models.BooleanField(
        default=False, help_text="New users get this role unless something else assigns one."
    )
    webhook_assignable = models.BooleanField(
        default=False,
        help_text="May a webhook (role=...) or a mapped Customer.io field assign this role?",
    )
    group = models.ForeignKey(
        Group,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="roles",
        help_text="Users with this role are put in this group (and taken out of the previous role's group).",
    )

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"], condition=Q(is_default=True), name="users_role_single_default"
            )
        ]

    def __str__(self):
        return self.name

    def save(self, *args, **kwargs):
        # Keeping exactly one default is an invariant of the table, so it is kept here, atomically; the partial
        # unique constraint is the backstop for writes that bypass save().
        with transaction.atomic():
            if self.is_default:
                Role.objects.filter(is_default=True).exclude(pk=self.pk).update(is_default=False)
            super().save(*args, **kwargs)

    @classmethod
    def get_default(cls) -> "Role":
        return cls.objects.get(is_default=True)


class UserManager(DjangoUserManager):
    @classmethod
    def normalize_email(cls, email):
        # Stored as given (Django would lowercase the domain); comparisons go through email_normalized.
        return (email or "").strip()

    def _create_user(self, username, email, password, **extra_fields):
        if not email:
            raise ValueError("Every user needs an email address.")
        return super()._create_user(username, email, password, **extra_fields)


class User(AbstractUser):
    email = EmailAddressField("email address", max_length=254)
    email_normalized = models.CharField(
        max_length=254, unique=True, editable=False, help_text="The email lowercased; every lookup uses it."
    )
    cio_id = models.CharField("Customer.io id", max_length=64, unique=True, null=True, blank=True, default=None)
    # Filled with the default role by a pre_save receiver when left empty (create_user, the admin, User(...));
    # bulk paths, which skip signals, set it explicitly.
    role = models.ForeignKey(Role, on_delete=models.PROTECT, related_name="users")
    tags = models.ManyToManyField("Tag", through="UserTag", related_name="users", blank=True)
    meta = models.JSONField(
        default=dict, blank=True, help_text="Customer.io attributes that map to no first-class field."
    )
    # Follow-ups of a webhook-created account that must survive a failed or interrupted attempt: a generated password
    # Customer.io has not accepted yet, and a welcome email that waits for the final password.
    password_return_due = models.BooleanField(default=False, editable=False)
    # Set while one processing is returning the password, so a concurrent delivery does not return another one;
    # it expires by itself if that processing died.
    password_return_claimed_until = models.DateTimeField(null=True, blank=True, editable=False)
    welcome_email_due = models.BooleanField(default=False, editable=False)
    # When Customer.io last accepted this person's profile from the site (users.services.outbox).
    cio_pushed_at = models.DateTimeField("sent to Customer.io", null=True, blank=True, editable=False)
    # Customer.io reported that mail to this address does not arrive (a bounce, a spam complaint, ...), through a
    # reaction to its message events (webhooks.message_events) or an admin's tick; users.access.has_deliverable_email
    # reads it, so a site can stop gating something behind an email the person never gets. Cleared by hand.
    email_undeliverable = models.BooleanField(
        "email undeliverable",
        default=False,
        help_text="Mail to this address does not arrive (set by a message-event reaction; untick when it is fixed).",
    )
    email_undeliverable_at = models.DateTimeField("marked undeliverable at", null=True, blank=True)
    email_undeliverable_reason = models.CharField("why", max_length=500, blank=True)

    objects = UserManager()

    REQUIRED_FIELDS = ["email"]

    class Meta(AbstractUser.Meta):
        swappable = "AUTH_USER_MODEL"
        # The few users owed a password return, counted at every /metrics scrape and overview page view: a partial
        # index holds only them, so the count never reads the whole table.
        indexes = [
            models.Index(fields=["id"], condition=models.Q(password_return_due=True), name="users_user_return_due")
        ]

    def set_password(self, raw_password):
        super().set_password(raw_password)
        # A password set any other way (the person through a reset link, an admin) is the final one: no generated
        # password is owed to Customer.io any more. The flows that generate one mark it owed again afterwards.
        self.password_return_due = False
        self.password_return_claimed_until = None

    # user.has_tag(tag), a part of the access API (users.access.has_tag), is added by UsersConfig.ready(): the
    # access checks are built on these models, so the models do not import them.

    @classmethod
    def from_db(cls, db, field_names, values):
        user = super().from_db(db, field_names, values)
        # Read by the role/group signal: a save only re-syncs groups when the role really changed.
        user._synced_role_id = user.__dict__.get("role_id")
        return user

    def clean(self):
        super().clean()
        self.email_normalized = normalize_email(self.email)
        clash = User.objects.filter(email_normalized=self.email_normalized).exclude(pk=self.pk)
        if self.email_normalized and clash.exists():
            raise ValidationError({"email": "A user with this email address already exists."})

    def save(self, *args, **kwargs):
        # Filled on every save so that the unique index is always the case-insensitive rule.
        self.email_normalized = normalize_email(self.email)
        if self.cio_id == "":
            self.cio_id = None
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and "email" in update_fields:
            kwargs["update_fields"] = {*update_fields, "email_normalized"}
        super().save(*args, **kwargs)


class Tag(models.Model):
    """A Customer.io segment as the site sees it. Matched by segment id; the name is only a label."""

    class Kind(models.TextChoices):
        MANUAL = "manual", "Manual"
        DATA_DRIVEN = "data_driven", "Data-driven"

    segment_id = models.PositiveBigIntegerField("Customer.io segment id", unique=True)
    name = models.CharField(max_length=255, blank=True)
    # Blank until the segment list has been read from Customer.io.
    kind = models.CharField(max_length=16, choices=Kind.choices, blank=True)

    class Meta:
        ordering = ["name", "segment_id"]

    def __str__(self):
        return self.name or f"Segment {self.segment_id}"

    @staticmethod
    def kind_from_segment_type(segment_type: str | None) -> str:
        if not segment_type:
            return ""
        return Tag.Kind.MANUAL if segment_type == "manual" else Tag.Kind.DATA_DRIVEN


class UserTag(models.Model):
    # No index of its own: the unique (user, tag) index starts with it, and a backfill writes millions of rows.
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="user_tags", db_index=False)
    tag = models.ForeignKey(Tag, on_delete=models.CASCADE, related_name="user_tags")
    applied_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "tag"], name="users_usertag_unique")]

    def __str__(self):
        return f"{self.user} – {self.tag}"


class ActivityLog(models.Model):
    """The log a site admin reads ("contact loaded, tags loaded"). Context is redacted before it is stored."""

    class Level(models.TextChoices):
        INFO = "info", "Info"
        NOTICE = "notice", "Notice"
        WARNING = "warning", "Warning"
        ERROR = "error", "Error"

    class Source(models.TextChoices):
        WEBHOOK = "webhook", "Webhook"
        CUSTOMERIO = "customerio", "Customer.io"
        BACKFILL = "backfill", "Backfill"
        ADMIN = "admin", "Admin"

    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    level = models.CharField(max_length=8, choices=Level.choices, default=Level.INFO)
    source = models.CharField(max_length=16, choices=Source.choices)
    message = models.TextField()
    user = models.ForeignKey(User, on_delete=models.SET_NULL, null=True, blank=True, related_name="activity_logs")
    context = models.JSONField(default=dict, blank=True)
    # The webhook delivery whose processing wrote the line. A plain id, not a foreign key: users sit below webhooks
    # and must not depend on them (the delivery's admin page lists its lines by this id).
    delivery_id = models.PositiveBigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        # The admin's filters, newest first. Declared here rather than with db_index, which on PostgreSQL adds a
        # second index per text column for LIKE searches nobody makes; and the delivery index leaves out the lines
        # of no delivery (a backfill writes a million). Every index is written for every line.
        indexes = [
            models.Index(fields=["level", "created_at"], name="users_activitylog_level_time"),
            models.Index(fields=["source", "created_at"], name="users_activitylog_source_time"),
            models.Index(
                fields=["delivery_id"],
                name="users_activitylog_delivery",
                condition=models.Q(delivery_id__isnull=False),
            ),
        ]

    def __str__(self):
        return f"[{self.level}] {self.message[:80]}"


class ContactLock(models.Model):
    """One row per Customer.io contact, locked (SELECT ... FOR UPDATE) while that contact is processed so that
    concurrent deliveries for one person run one after another. On SQLite the IMMEDIATE write lock serializes
    anyway."""

    key = models.CharField(max_length=300, unique=True)
    # The last processing of this contact that read Customer.io, written in its own transaction: when the data it
    # applied was read, how much its action does (webhooks.actions strength), the role it asked for, and its answer.
    # A delivery received before that read, for no more, may answer with it instead of reading again.
    read_at = models.DateTimeField(null=True, blank=True)
    read_strength = models.PositiveSmallIntegerField(default=0)
    read_role = models.CharField(max_length=100, blank=True)
    read_result = models.JSONField(null=True, blank=True)
    read_user_id = models.IntegerField(null=True, blank=True)  # not a key: a deleted user just ends the reuse
    # SQLite only: a synchronous processing of this contact is under way in some process until then (its reads happen
    # before the database lock, so the lock cannot make the other processes' deliveries wait for its result).
    read_claimed_until = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return self.key


class ImportRun(models.Model):
    """One `cio_import_users` run of a segment: where it is in the segment's membership and what it did so far.

    The position is the start cursor of the membership page being imported plus how many of that page's members
    are done; it is saved in the same transaction as those members' users, so a resumed run neither skips nor
    repeats anybody.
    """

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        PAUSED = "paused", "Paused (--limit reached)"
        INTERRUPTED = "interrupted", "Interrupted"
        FAILED = "failed", "Failed"
        FINISHED = "finished", "Finished"

    RESUMABLE = (Status.RUNNING, Status.PAUSED, Status.INTERRUPTED, Status.FAILED)

    segment_id = models.PositiveBigIntegerField("Customer.io segment id", db_index=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING, db_index=True)
    # The options the run was started with; a resumed run keeps them.
    role = models.CharField(max_length=64, blank=True)
    send_notification = models.BooleanField(default=False)

    cursor = models.TextField(blank=True, help_text="Start cursor of the membership page being imported.")
    page_offset = models.PositiveIntegerField(default=0, help_text="Members of that page already imported.")
    members_done = models.PositiveIntegerField(default=0)
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    app_api_calls = models.PositiveIntegerField(default=0)
    track_api_calls = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)

    started_at = models.DateTimeField(auto_now_add=True)
    # Renewed while the run works: a RUNNING run whose heartbeat stopped belongs to a process that died.
    heartbeat_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            # Two processes importing one segment at once would both do all the work.
            models.UniqueConstraint(
                fields=["segment_id"], condition=Q(status="running"), name="users_importrun_one_running_per_segment"
            )
        ]

    def __str__(self):
        return f"Import of segment {self.segment_id} ({self.get_status_display()})"


class AccessRule(models.Model):
    """A page (or everything under a path) that only users with certain tags may open; enforced by
    users.access.AccessRuleMiddleware. The admin, the login and password-reset pages, the webhook, static files and
    /healthz are never locked, whatever the rules say."""

    path = models.CharField(
        max_length=255,
        help_text="A path such as /members/ (with the slashes the site uses).",
        validators=[RegexValidator(r"^/", "A path starts with /.")],
    )
    prefix = models.BooleanField(
        default=False, help_text="Cover everything under the path too (/members/ covers /members/lesson-1/)."
    )
    enabled = models.BooleanField(default=True)
    tags_any = models.ManyToManyField(
        Tag,
        blank=True,
        related_name="access_rules_any+",
        verbose_name="any of these tags",
        help_text="The user needs one of them.",
    )
    tags_all = models.ManyToManyField(
        Tag,
        blank=True,
        related_name="access_rules_all+",
        verbose_name="all of these tags",
        help_text="The user needs every one.",
    )
    tags_none = models.ManyToManyField(
        Tag,
        blank=True,
        related_name="access_rules_none+",
        verbose_name="none of these tags",
        help_text="A user with any of them is refused (a lockout, e.g. Payment failed).",
    )
    redirect_url = models.CharField(
        max_length=500,
        blank=True,
        help_text="Where a refused user is sent (a path or URL; ?next= is added). Empty: a 403 page with the message.",
    )
    message = models.TextField(blank=True, help_text="Shown on the 403 page when there is no redirect URL.", default="")
    staff_pass = models.BooleanField("staff always allowed", default=True)
    apply_tags = models.ManyToManyField(
        Tag,
        blank=True,
        related_name="access_rules_applying+",
        limit_choices_to={"kind": "manual"},
        verbose_name="tags applied on visit",
        help_text="Applied to a user this rule lets in (manual-segment tags reach Customer.io too).",
    )

    class Meta:
        ordering = ["path", "prefix"]
        constraints = [models.UniqueConstraint(fields=["path", "prefix"], name="users_accessrule_unique_path")]

    def __str__(self):
        return f"{self.path}{'*' if self.prefix else ''}"


# The outboxes towards Customer.io live beside the models they point at.
from .outbox import OutboxEntry, SegmentChange  # noqa: E402

__all__ = [
    "AccessRule",
    "ActivityLog",
    "ContactLock",
    "ImportRun",
    "OutboxEntry",
    "Role",
    "SegmentChange",
    "Tag",
    "User",
    "UserTag",
]
