from django.core.exceptions import ValidationError
from django.db import models

from users.models import Tag


class WebhookDelivery(models.Model):
    """Every request that reaches the webhook, stored first (untrusted) and then processed — so a crash still leaves
    a trace and a delivery can be inspected or replayed. Never holds the access key or a password: the query is
    stored without secret parameters and the body with password-like fields masked."""

    class Status(models.TextChoices):
        RECEIVED = "received", "Received"
        QUEUED = "queued", "Queued"
        RETRYING = "retrying", "Retrying"
        PROCESSING = "processing", "Processing"
        SUCCEEDED = "succeeded", "Succeeded"
        SKIPPED = "skipped", "Skipped"
        FAILED = "failed", "Failed"
        INVALID = "invalid", "Invalid"

    FINISHED_OK = (Status.SUCCEEDED, Status.SKIPPED)
    FINISHED = (Status.SUCCEEDED, Status.SKIPPED, Status.FAILED, Status.INVALID)
    # Accepted and not yet processed: the background worker owes them a run.
    WAITING = (Status.QUEUED, Status.RETRYING)

    # Indexed: the admin's and settings page's newest-first lists, the admin's date filter, prune_webhook_data's
    # "finished and older than --days", the admin overview's recent hours. (Text columns are indexed in Meta.indexes
    # below, never with db_index=True: on PostgreSQL that also builds a varchar_pattern_ops twin for LIKE "prefix%",
    # which no query here runs, and every index is kept up to date by every accepted webhook's INSERT.)
    # Not (received_at, status): SQLite would then answer the queue's "status IN (...)" (/healthz) by scanning that
    # whole index rather than the status one (docs/performance.md, "The admin overview").
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    action = models.CharField(max_length=32, blank=True)
    contact = models.CharField(max_length=254, blank=True, help_text="Email, cio_id or id.")
    contact_type = models.CharField(max_length=8, blank=True)
    # The contact as the per-contact lock names it ("email:ann@example.com"): groups one person's deliveries.
    contact_key = models.CharField(max_length=300, blank=True)
    query = models.JSONField(default=dict, blank=True, help_text="Query parameters, access_key removed.")
    body = models.JSONField(null=True, blank=True, help_text="Parsed body, password-like fields masked.")
    remote_ip = models.GenericIPAddressField(null=True, blank=True)
    cio_delivery_id = models.CharField(max_length=200, blank=True)
    idempotency_key = models.CharField(max_length=200, blank=True)
    # "key:<x-cio-idempotency-key>" or "delivery:<x-cio-delivery-id>": one row per Customer.io delivery.
    # Unique through Meta.constraints (the same UNIQUE index, without unique=True's pattern-ops twin).
    dedup_key = models.CharField(max_length=220, null=True, blank=True, editable=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RECEIVED)
    http_status = models.PositiveSmallIntegerField(null=True, blank=True)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True)
    traceback = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    task_id = models.CharField(max_length=64, blank=True, help_text="The background task that will process it.")
    # Which key the caller used (settings_app.access_keys.fingerprint: never the key), shown on the settings page
    # so an admin sees when journeys have moved to a new key.
    access_key_fingerprint = models.CharField(max_length=16, blank=True)
    # Indexed in Meta.indexes only where set: a delivery is written without a user, so the accept adds no entry.
    user = models.ForeignKey(
        "users.User",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="webhook_deliveries",
        db_index=False,
    )

    class Meta:
        ordering = ["-received_at", "-id"]
        verbose_name_plural = "webhook deliveries"
        # Only what a query needs: each index is one more write per accepted webhook. Not indexed: action and
        # contact (an admin filter on a handful of values, walked along received_at; the admin's search is a
        # substring match no B-tree serves), cio_delivery_id (retries are found by dedup_key).
        indexes = [
            # The queue: waiting deliveries (status IN queued/retrying), the sweep's expired leases, /healthz and
            # webhook_queue's counts by status, prune's finished ones — status first covers status alone.
            models.Index(fields=["status", "lease_expires_at"], name="delivery_status_lease"),
            # A worker's claim of a person's waiting deliveries (contact_key IN ...), the planner's recent ones.
            models.Index(fields=["contact_key"], name="delivery_contact_key"),
            # A user's deliveries (their admin page; SET NULL when the user is deleted): those with a user only, so
            # that the accept's INSERT (user still NULL) writes no entry; `user_id = x` implies the condition.
            models.Index(fields=["user"], condition=models.Q(user__isnull=False), name="delivery_user"),
        ]
        constraints = [
            # One row per Customer.io delivery: a retry's INSERT fails on it and the first row is looked up by it.
            models.UniqueConstraint(fields=["dedup_key"], name="delivery_dedup_key"),
        ]

    def __str__(self):
        return f"{self.action or '?'} {self.contact or '-'} ({self.status})"


class WorkerHeartbeat(models.Model):
    """A background worker's sign of life, written every few seconds (WEBHOOK_SWEEP_SECONDS) while its loop makes
    progress (webhooks.queue.worker: a worker stuck in a task stops beating):
    /healthz reports the newest one's age. Rows of workers gone for longer than prune_webhook_data's --days are
    deleted by it."""

    worker_id = models.CharField(max_length=64, unique=True)
    host = models.CharField(max_length=255, blank=True)
    pid = models.PositiveIntegerField(null=True, blank=True)
    started_at = models.DateTimeField()
    seen_at = models.DateTimeField(db_index=True)

    def __str__(self):
        return f"{self.worker_id} ({self.host}, seen {self.seen_at:%Y-%m-%d %H:%M:%S})"


class RefusedRequestWindow(models.Model):
    """Requests refused for a wrong or missing access key from one client address (IPv6: its /64) in one hour,
    counted — never stored one by one, since anyone can send them (see webhooks.intake.refusals). The table is capped
    (WEBHOOK_REFUSED_MAX_ROWS address rows); addresses past the cap are counted together in the hour's overflow row
    (`overflow`, with no address). Deleted by prune_webhook_data like deliveries."""

    window_start = models.DateTimeField()  # indexed first in the unique constraint
    # "203.0.113.9", "2001:db8:1:2::/64", "unknown" (no usable REMOTE_ADDR); empty on the overflow row.
    address = models.CharField(max_length=64, blank=True)
    overflow = models.BooleanField(default=False)
    count = models.PositiveIntegerField(default=0)
    wrong_key = models.PositiveIntegerField(default=0, help_text="Refused for a key that matches no valid key.")
    missing_key = models.PositiveIntegerField(default=0, help_text="Refused for sending no key at all.")
    throttled = models.PositiveIntegerField(default=0, help_text="Answered 429 (WEBHOOK_REFUSED_PER_MINUTE).")
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    actions = models.JSONField(default=list, blank=True, help_text="The first few wpf_action values asked for.")

    class Meta:
        ordering = ["-window_start", "-count"]
        verbose_name = "refused requests (one address, one hour)"
        verbose_name_plural = "refused requests"
        constraints = [models.UniqueConstraint(fields=["window_start", "address"], name="refused_window_address")]

    def __str__(self):
        who = "other addresses" if self.overflow else self.address
        return f"{self.count} refused from {who} ({self.window_start:%Y-%m-%d %H:%M})"


class CustomerIOCallHour(models.Model):
    """Calls to Customer.io (every HTTP attempt, retries included) in one hour, per API and kind of answer: the admin
    overview's chart. Counted in memory by each process and added here at most once a minute (webhooks.cio_calls),
    so the table stays small — hours × 2 APIs × 5 kinds — and a call costs no write. Deleted by prune_webhook_data
    like deliveries."""

    class Answer(models.TextChoices):
        OK = "ok", "2xx/3xx"
        RATE_LIMITED = "429", "429 rate limited"
        CLIENT_ERROR = "4xx", "other 4xx"
        SERVER_ERROR = "5xx", "5xx"
        NO_ANSWER = "error", "no answer (timeout, connection)"

    hour = models.DateTimeField()  # the hour's start, UTC; indexed first in the unique constraint
    api = models.CharField(max_length=8)  # "app" | "track"
    answer = models.CharField(max_length=8, choices=Answer.choices)
    count = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-hour", "api", "answer"]
        verbose_name = "Customer.io calls (one hour)"
        verbose_name_plural = "Customer.io calls per hour"
        constraints = [models.UniqueConstraint(fields=["hour", "api", "answer"], name="cio_call_hour")]

    def __str__(self):
        return f"{self.count} {self.api} API calls answered {self.answer} ({self.hour:%Y-%m-%d %H:%M})"


class MessageEvent(models.Model):
    """One event of Customer.io's reporting webhook: what happened to a message sent to a person (sent, delivered,
    opened, clicked, bounced, ...). Stored by the reporting endpoint in one INSERT (webhooks.intake.reporting), once
    per Customer.io `event_id` (its retries store nothing more); linked to a user and reacted to by the background
    worker (webhooks.message_events). The message itself (subject, body, headers) is never kept: only which message,
    for whom, what happened and when. Deleted after 180 days by prune_message_events."""

    event_id = models.CharField(max_length=100)  # unique through Meta.constraints
    metric = models.CharField(max_length=32, help_text="What happened: sent, delivered, opened, clicked, bounced, ...")
    # Customer.io's object_type: email, push, sms, in_app, slack, webhook (a journey's webhook action), customer (a
    # subscription change). Plain text: Customer.io adds channels, and an event of a new one is stored all the same.
    channel = models.CharField(max_length=16, blank=True)
    occurred_at = models.DateTimeField(help_text="When it happened, by Customer.io's clock.")
    received_at = models.DateTimeField(auto_now_add=True)
    # Which message: Customer.io's delivery id (one message to one person: its sent, opened and clicked events share
    # it), what sent it (a campaign, i.e. a journey; a broadcast; a newsletter; a transactional message), the
    # journey's action, and the person's journey run.
    delivery_id = models.CharField(max_length=200, blank=True)
    campaign_id = models.PositiveBigIntegerField(null=True, blank=True)
    broadcast_id = models.PositiveBigIntegerField(null=True, blank=True)
    newsletter_id = models.PositiveBigIntegerField(null=True, blank=True)
    transactional_message_id = models.PositiveBigIntegerField(null=True, blank=True)
    action_id = models.PositiveBigIntegerField(null=True, blank=True)
    journey_id = models.CharField(max_length=64, blank=True)
    # For whom: the address the message went to (an email, a phone number, a device token), and the person's
    # identifiers as Customer.io sent them (the worker links the event to a user by cio_id, then by email).
    recipient = models.CharField(max_length=254, blank=True)
    email = models.CharField(max_length=254, blank=True)
    cio_id = models.CharField("Customer.io id", max_length=64, blank=True)
    customer_id = models.CharField("Customer.io person id", max_length=254, blank=True)
    link = models.CharField(max_length=2000, blank=True, help_text="The link a `clicked` event is about.")
    failure = models.CharField(
        max_length=500, blank=True, help_text="Why Customer.io could not deliver (bounced, failed, dropped, ...)."
    )
    # Indexed in Meta.indexes only where set: the accept writes no user, so its INSERT adds no entry.
    user = models.ForeignKey(
        "users.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="message_events", db_index=False
    )
    processed_at = models.DateTimeField(null=True, blank=True, help_text="When the worker linked and reacted to it.")
    # Set by the worker on an event it found no user for ("email:ann@example.com", or "cio_id:..." without an email):
    # a user created (or given that email or cio_id) later finds their events through it. NULL otherwise, so the
    # accept's INSERT adds no entry to its index either.
    unlinked_key = models.CharField(max_length=300, null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-occurred_at", "-id"]
        # Each index is one more write per accepted event: the INSERT writes the primary key, the event_id and the
        # waiting ones' entries, nothing else. Not indexed: occurred_at (the admin lists by id, prune scans once a
        # day), metric and channel (filters over a handful of values, walked along the primary key).
        indexes = [
            # The worker's "events not processed yet", oldest first: only those, so the index stays small.
            models.Index(fields=["id"], condition=models.Q(processed_at__isnull=True), name="message_event_waiting"),
            # A user's timeline, newest first (their admin page).
            models.Index(
                fields=["user", "-occurred_at"], condition=models.Q(user__isnull=False), name="message_event_user"
            ),
            # A user who appears later: their events waiting for them.
            models.Index(
                fields=["unlinked_key"],
                condition=models.Q(unlinked_key__isnull=False),
                name="message_event_unlinked",
            ),
        ]
        constraints = [
            # One row per Customer.io event: a retry's INSERT finds it taken and writes nothing (ON CONFLICT DO
            # NOTHING).
            models.UniqueConstraint(fields=["event_id"], name="message_event_id"),
        ]

    def __str__(self):
        return f"{self.channel or 'message'} {self.metric} for {self.recipient or self.email or self.cio_id or '?'}"

    @property
    def sent_by(self) -> str:
        """What sent the message, as the admin names it: "campaign 12", "broadcast 3", ... or ""."""
        for label, value in self.sources():
            if value is not None:
                return f"{label} {value}"
        return ""

    def sources(self) -> list[tuple[str, int | None]]:
        return [
            ("campaign", self.campaign_id),
            ("broadcast", self.broadcast_id),
            ("newsletter", self.newsletter_id),
            ("transactional", self.transactional_message_id),
        ]


class MessageReaction(models.Model):
    """What the site does when a message event about one of its users arrives, chosen in the admin: apply a tag,
    remove a tag (through users.access, so a manual segment follows in Customer.io), or mark the user's email
    undeliverable. None exist until an admin adds one: until then events are only recorded."""

    class Kind(models.TextChoices):
        APPLY_TAG = "apply_tag", "Apply a tag"
        REMOVE_TAG = "remove_tag", "Remove a tag"
        MARK_UNDELIVERABLE = "mark_undeliverable", "Mark the email undeliverable"

    # The metrics Customer.io's reporting webhooks send (its object types do not all send every one).
    METRICS = [
        "sent",
        "delivered",
        "opened",
        "clicked",
        "converted",
        "bounced",
        "spammed",
        "unsubscribed",
        "subscribed",
        "failed",
        "dropped",
        "undeliverable",
        "deferred",
        "attempted",
        "drafted",
    ]
    CHANNELS = ["email", "push", "sms", "in_app", "slack", "webhook", "customer"]

    metric = models.CharField(max_length=32, choices=[(m, m) for m in METRICS])
    channel = models.CharField(
        max_length=16,
        blank=True,
        choices=[("", "any channel"), *[(c, c) for c in CHANNELS]],
        help_text="Only events of this channel (Customer.io's object_type). Empty: any.",
    )
    kind = models.CharField("reaction", max_length=32, choices=Kind.choices)
    tag = models.ForeignKey(
        Tag,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="message_reactions",
        help_text="For applying or removing a tag: a manual segment (Customer.io follows) or a tag the site holds.",
    )
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["metric", "channel", "kind"]
        verbose_name = "message reaction"

    def __str__(self):
        what = f"{self.get_kind_display().lower()}{f' {self.tag}' if self.tag_id else ''}"
        return f"On {self.channel or 'any'} {self.metric}: {what}"

    def clean(self):
        needs_tag = self.kind in (self.Kind.APPLY_TAG, self.Kind.REMOVE_TAG)
        if needs_tag and self.tag_id is None:
            raise ValidationError({"tag": "Choose the tag to apply or remove."})
        if not needs_tag and self.tag_id is not None:
            raise ValidationError({"tag": "Marking the email undeliverable takes no tag."})
        if not needs_tag and self.channel not in ("", "email"):
            raise ValidationError(
                {"channel": "Only email events say whether mail to the address arrives: choose email (or any)."}
            )
        if needs_tag and self.tag.kind == Tag.Kind.DATA_DRIVEN:
            raise ValidationError(
                {"tag": f'"{self.tag}" is a data-driven segment: Customer.io decides its members by its conditions.'}
            )


class Overview(WebhookDelivery):
    """No table: the admin's Overview page (webhooks.overview), listed under Webhooks at /admin/webhooks/overview/.
    A proxy so that the admin lists it like its other pages and it has a permission of its own to grant."""

    class Meta:
        proxy = True
        default_permissions = ("view",)
        verbose_name = verbose_name_plural = "overview"
