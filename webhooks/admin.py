from django.contrib import admin, messages

from .models import WebhookDelivery
from .queue import requeue


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = [
        "received_at",
        "action",
        "contact",
        "status",
        "http_status",
        "attempts",
        "duration_ms",
        "short_error",
        "user",
    ]
    list_filter = ["status", "action", "received_at"]
    search_fields = ["contact", "cio_delivery_id", "idempotency_key"]
    date_hierarchy = "received_at"
    list_select_related = ["user"]
    readonly_fields = [field.name for field in WebhookDelivery._meta.get_fields() if field.concrete]
    actions = ["replay"]

    @admin.display(description="error")
    def short_error(self, delivery):
        return (delivery.error or "")[:80]

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
            if delivery.action == "test" or not delivery.contact:
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
