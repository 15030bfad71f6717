"""The site -> Customer.io outboxes: rows written in the transaction of the change that causes them, sent by the
background worker."""

from django.db import models
from django.utils import timezone


class SegmentChange(models.Model):
    """A tag applied or removed on the site that Customer.io's manual segment has to follow (the outbox of
    users.access.apply_tags / remove_tags). Written in the same transaction as the local change, so nothing is lost;
    sent in batches by the background worker, retried with backoff; kept a while after it was sent, because
    Customer.io's segment reads lag its writes and the tag must not flicker off meanwhile."""

    class Action(models.TextChoices):
        ADD = "add", "Add to segment"
        REMOVE = "remove", "Remove from segment"

    user = models.ForeignKey("users.User", on_delete=models.CASCADE, related_name="segment_changes")
    tag = models.ForeignKey("users.Tag", on_delete=models.CASCADE, related_name="segment_changes")
    action = models.CharField(max_length=8, choices=Action.choices)
    created_at = models.DateTimeField(auto_now_add=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    # A worker sending it holds it until then; a worker that died lets it go by itself.
    claimed_until = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["sent_at", "next_attempt_at"], name="users_segchange_due")]

    def __str__(self):
        return f"{self.get_action_display()}: {self.tag} for {self.user}"


class OutboxEntry(models.Model):
    """Something the site owes Customer.io's Track API about one person (users.services.outbox): their profile to
    send again (created, a pushed field, the email or role changed, a login), an event they did, or a login link to
    return. Written in the transaction of the change that causes it, so nothing is lost; sent by the background worker
    in /api/v2/batch requests, a person's profile entries coalesced into one (their values as they are when sent),
    retried with backoff, taken over when a worker dies; deleted once Customer.io has it."""

    class Kind(models.TextChoices):
        PROFILE = "profile", "Profile"
        EVENT = "event", "Event"
        LOGIN_LINK = "login_link", "Login link"

    user = models.ForeignKey("users.User", on_delete=models.CASCADE, related_name="outbox_entries")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    created_at = models.DateTimeField(default=timezone.now)
    # An email change not yet sent: the address Customer.io still knows the person by.
    previous_email = models.CharField(max_length=254, blank=True)
    CREATED = "*"  # in `fields`: a user created on the site (everything is sent, and the person may be created)

    # Profiles: the user fields that changed ("email", "first_name", "meta.plan", ...), or ["*"] for a user created on
    # the site. Only those are sent: a value Customer.io changed since is never put back by an unrelated change.
    fields = models.JSONField(default=list, blank=True)
    # Events: the name, the data, and a ULID Customer.io deduplicates by (a retry after a lost answer is not counted
    # twice).
    event_name = models.CharField(max_length=100, blank=True)
    event_data = models.JSONField(null=True, blank=True)
    event_id = models.CharField(max_length=26, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    # A worker sending it holds it until then; a worker that died lets it go by itself.
    claimed_until = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["id"]
        verbose_name = "Customer.io outbox entry"
        verbose_name_plural = "Customer.io outbox"
        indexes = [models.Index(fields=["next_attempt_at"], name="users_outbox_due")]

    def __str__(self):
        return f"{self.what} for {self.user}"

    @property
    def what(self) -> str:
        return f"event {self.event_name}" if self.kind == self.Kind.EVENT else self.get_kind_display().lower()
