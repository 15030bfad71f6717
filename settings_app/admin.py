from django.contrib import admin

from .models import FieldMapping

# The Webhook settings page is registered by the webhooks app (webhooks/settings_admin.py): it lists the webhook URLs
# from the webhooks' action registry and logs key changes in the users' activity log, and configuration must not
# depend on the apps above it.


@admin.register(FieldMapping)
class FieldMappingAdmin(admin.ModelAdmin):
    list_display = ["cio_attribute", "user_field", "direction", "active"]
    list_editable = ["active"]
    list_filter = ["active", "direction"]
    fields = ["cio_attribute", "user_field", "direction", "active"]
    search_fields = ["cio_attribute", "user_field"]
