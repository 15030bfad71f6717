import django_tasks_db.admin  # noqa: F401 (registers the task results first, so that they can be unregistered here)
from django.contrib import admin, messages
from django.template.defaultfilters import truncatechars
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django_tasks import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from users.models import ActivityLog

from . import settings_admin  # noqa: F401  (registers the Webhook settings page)
from .actions import ACTIONS, get_action
from .message_events import admin as message_events_admin  # noqa: F401  (message events, reactions, user timeline)
from .models import RefusedRequestWindow, WebhookDelivery
from .overview import admin as overview_admin  # noqa: F401  (registers the Overview page)
from .queue.enqueue import requeue

# The task backend's "Task Results" are the queue's plumbing: each task only carries a delivery, whose own page
# shows what happened (status, error, traceback) and, under "background task", the state of its task.
admin.site.unregister(DBTaskResult)

# Activity lines shown on a delivery's page (a delivery writes a handful; a runaway one is cut short).
SHOWN_ACTIVITY_LINES = 100


class ActionFilter(admin.SimpleListFilter):
    """The webhook's actions, not every value stored: invalid requests keep whatever action they named."""

    title = "action"
    parameter_name = "action"

    def lookups(self, request, model_admin):
        return [(action, action) for action in ACTIONS]

    def queryset(self, request, queryset):
        return queryset.filter(action=self.value()) if self.value() else queryset


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    # Narrow columns, so the list fits a 1,400 px window beside the filters without scrolling sideways.
    list_display = ["received", "action", "short_contact", "outcome", "tries", "short_error"]
    list_filter = ["status", ActionFilter, "received_at"]
    search_fields = ["contact", "cio_delivery_id", "idempotency_key"]
    date_hierarchy = "received_at"
    readonly_fields = [
        *(field.name for field in WebhookDelivery._meta.get_fields() if field.concrete),
        "background_task",
        "activity_lines",
    ]
    actions = ["replay"]

    @admin.display(description="received", ordering="received_at")
    def received(self, delivery):
        return f"{timezone.localtime(delivery.received_at):%b %d %H:%M:%S}"

    @admin.display(description="contact", ordering="contact")
    def short_contact(self, delivery):
        return _shortened(delivery.contact, 28)

    @admin.display(description="status", ordering="status")
    def outcome(self, delivery):
        # The HTTP answer of a finished delivery; a waiting one (a replay, say) may still hold an earlier run's.
        finished = delivery.status in WebhookDelivery.FINISHED and delivery.http_status
        return f"{delivery.get_status_display()} {delivery.http_status}" if finished else delivery.get_status_display()

    @admin.display(description="tries", ordering="attempts")
    def tries(self, delivery):
        return delivery.attempts

    @admin.display(description="error")
    def short_error(self, delivery):
        return _shortened(delivery.error, 36)

    @admin.display(description="background task")
    def background_task(self, delivery):
        task = DBTaskResult.objects.filter(pk=delivery.task_id).first() if delivery.task_id else None
        if task is None:
            return "-"
        when = f"{task.finished_at or task.started_at or task.enqueued_at:%Y-%m-%d %H:%M:%S %Z}"
        if task.status != TaskResultStatus.FAILED:
            return f"{task.status} ({when})"
        failure = task.exception_class_path or "-"
        return format_html("{} ({}): {}<pre>{}</pre>", task.status, when, failure, task.traceback or "")

    @admin.display(description="activity lines")
    def activity_lines(self, delivery):
        """What processing this delivery wrote to the activity log (lines carry the delivery's id)."""
        lines = ActivityLog.objects.filter(delivery_id=delivery.pk).order_by("created_at", "id")[:SHOWN_ACTIVITY_LINES]
        if not lines:
            return "(none)"
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            ((line.created_at.strftime("%Y-%m-%d %H:%M:%S"), line.get_level_display(), line.message) for line in lines),
        )
        return format_html('<table class="delivery-activity"><tbody>{}</tbody></table>', rows)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.action(description="Replay selected deliveries (process them again in the background)")
    def replay(self, request, queryset):
        replayed = skipped = 0
        for delivery in queryset:
            # An invalid request has no action or contact to replay; one being processed is left to finish.
            if delivery.status in (WebhookDelivery.Status.INVALID, WebhookDelivery.Status.PROCESSING):
                skipped += 1
                continue
            action = get_action(delivery.action)
            if action is None or not action.touches_user or not delivery.contact:
                skipped += 1
                continue
            if requeue(delivery):
                replayed += 1
            else:
                skipped += 1
        self.message_user(request, f"Queued {replayed} deliveries for processing.", messages.SUCCESS)
        if skipped:
            self.message_user(
                request, f"Skipped {skipped} (invalid, test, or being processed right now).", messages.WARNING
            )


@admin.register(RefusedRequestWindow)
class RefusedRequestWindowAdmin(admin.ModelAdmin):
    """Requests refused for their key, per address and hour (webhooks.intake.refusals writes them): read-only."""

    list_display = ["shown_address", "window", "count", "reason", "answered_429", "first", "last", "asked_for"]
    list_filter = ["overflow", "window_start"]
    search_fields = ["address"]
    date_hierarchy = "window_start"

    @admin.display(description="address", ordering="address")
    def shown_address(self, row):
        return "(other addresses, past WEBHOOK_REFUSED_MAX_ROWS)" if row.overflow else row.address

    @admin.display(description="hour", ordering="window_start")
    def window(self, row):
        return f"{timezone.localtime(row.window_start):%Y-%m-%d %H:%M}"

    @admin.display(description="reason")
    def reason(self, row):
        if row.wrong_key and row.missing_key:
            return f"wrong key ({row.wrong_key}), missing key ({row.missing_key})"
        return "missing key" if row.missing_key else "wrong key"

    # Not named after the field: the admin would then take the field's own label ("throttled").
    @admin.display(description="answered 429", ordering="throttled")
    def answered_429(self, row):
        return row.throttled

    @admin.display(description="first seen", ordering="first_seen")
    def first(self, row):
        return f"{timezone.localtime(row.first_seen):%H:%M:%S}"

    @admin.display(description="last seen", ordering="last_seen")
    def last(self, row):
        return f"{timezone.localtime(row.last_seen):%H:%M:%S}"

    @admin.display(description="actions asked for")
    def asked_for(self, row):
        return ", ".join(action or "(none)" for action in row.actions or [])

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def _shortened(text: str, length: int):
    """The start of a long text, the whole of it in the tooltip."""
    if len(text or "") <= length:
        return text or ""
    return format_html('<span title="{}">{}</span>', text, truncatechars(text, length))
