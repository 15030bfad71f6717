from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.template.response import TemplateResponse
from django.urls import path

from ..models import Overview
from .page import overview_context


@admin.register(Overview)
class OverviewAdmin(admin.ModelAdmin):
    """Not a list of rows: the one page, at the URL the admin gives the model's list (so its index links to it).
    Staff only (admin_view sends anyone else to the login page), with the view permission of "overview"."""

    def get_urls(self):
        info = self.opts.app_label, self.opts.model_name
        return [path("", self.admin_site.admin_view(self.overview_view), name=f"{info[0]}_{info[1]}_changelist")]

    def overview_view(self, request):
        if not self.has_view_permission(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "title": "Overview",
            "opts": self.opts,
            **overview_context(),
        }
        return TemplateResponse(request, "admin/webhooks/overview.html", context)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
