from django.contrib import admin

from .models import WebhookDelivery


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ["received_at", "action", "contact", "status", "http_status", "attempts", "duration_ms", "user"]
    list_filter = ["status", "action", "received_at"]
    search_fields = ["contact", "cio_delivery_id", "idempotency_key"]
    date_hierarchy = "received_at"
    list_select_related = ["user"]
    readonly_fields = [field.name for field in WebhookDelivery._meta.get_fields() if field.concrete]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
