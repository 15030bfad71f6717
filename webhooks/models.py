from django.db import models


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


class Overview(WebhookDelivery):
    """No table: the admin's Overview page (webhooks.overview), listed under Webhooks at /admin/webhooks/overview/.
    A proxy so that the admin lists it like its other pages and it has a permission of its own to grant."""

    class Meta:
        proxy = True
        default_permissions = ("view",)
        verbose_name = verbose_name_plural = "overview"
