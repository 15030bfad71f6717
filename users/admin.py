from collections import Counter

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm
from django.template.response import TemplateResponse
from django.utils import timezone

from .access import NotAManualSegment, apply_tags, remove_tags
from .models import AccessRule, ActivityLog, ImportRun, OutboxEntry, Role, SegmentChange, Tag, User, UserTag
from .services.roles import sync_role_group


class UserCreationWithEmailForm(AdminUserCreationForm):
    class Meta(AdminUserCreationForm.Meta):
        model = User
        fields = ("username", "email")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["email"].required = True


class UserTagInline(admin.TabularInline):
    model = UserTag
    extra = 0
    autocomplete_fields = ["tag"]
    fields = ["tag", "segment", "segment_type", "applied_at"]
    readonly_fields = ["segment", "segment_type", "applied_at"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("tag")

    @admin.display(description="Customer.io segment")
    def segment(self, user_tag):
        return user_tag.tag.segment_id if user_tag.tag_id else "-"

    @admin.display(description="segment type")
    def segment_type(self, user_tag):
        if not user_tag.tag_id:
            return "-"
        return user_tag.tag.get_kind_display() or "not known yet (run cio_sync_segments)"


class ManualTagForm(forms.Form):
    tag = forms.ModelChoiceField(
        Tag.objects.filter(kind=Tag.Kind.MANUAL),
        help_text="Manual segments only: Customer.io decides data-driven segments by their conditions.",
    )


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    add_form = UserCreationWithEmailForm
    add_fieldsets = (
        (None, {"classes": ("wide",), "fields": ("username", "email", "usable_password", "password1", "password2")}),
    )
    # The Customer.io part comes before Django's permission widgets, which site admins rarely need. Tags are edited
    # in the inline at the foot of the page (they have their own rows); the list here shows them where they matter.
    fieldsets = (
        *DjangoUserAdmin.fieldsets[:2],
        (
            "Customer.io",
            {
                "fields": (
                    "role",
                    "tag_list",
                    "cio_id",
                    "email_undeliverable",
                    "email_undeliverable_at",
                    "email_undeliverable_reason",
                    "meta",
                    "cio_pushed_at",
                    "owed_to_customerio",
                )
            },
        ),
        *DjangoUserAdmin.fieldsets[2:],
    )
    readonly_fields = [
        "tag_list",
        "email_undeliverable_at",
        "email_undeliverable_reason",
        "cio_pushed_at",
        "owed_to_customerio",
    ]
    list_display = ["username", "email", "first_name", "last_name", "role", "tag_list", "is_staff", "date_joined"]
    list_filter = ["role", "is_staff", "is_superuser", "is_active", "email_undeliverable", "tags"]
    search_fields = ["username", "email", "first_name", "last_name", "cio_id"]

    actions = ["apply_a_tag", "remove_a_tag"]

    @admin.action(description="Apply a tag (manual segment) to the selected users")
    def apply_a_tag(self, request, queryset):
        return self._change_tag(request, queryset, apply=True)

    @admin.action(description="Remove a tag (manual segment) from the selected users")
    def remove_a_tag(self, request, queryset):
        return self._change_tag(request, queryset, apply=False)

    def _change_tag(self, request, queryset, *, apply: bool):
        form = ManualTagForm(request.POST if "tag" in request.POST else None)
        if form.is_bound and form.is_valid():
            tag = form.cleaned_data["tag"]
            changed = 0
            try:
                for user in queryset:
                    change = apply_tags(user, tag) if apply else remove_tags(user, tag)
                    changed += bool(change.applied or change.removed)
            except NotAManualSegment as exc:
                self.message_user(request, str(exc), messages.ERROR)
                return None
            verb = "applied to" if apply else "removed from"
            self.message_user(
                request,
                f'"{tag}" {verb} {changed} user(s); Customer.io follows in the background.',
                messages.SUCCESS,
            )
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Apply a tag" if apply else "Remove a tag",
            "form": form,
            "users": queryset,
            "action": request.POST.get("action"),
            "selected": request.POST.getlist(admin.helpers.ACTION_CHECKBOX_NAME),
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/users/user/change_tag.html", context)

    def get_inlines(self, request, obj):
        # Tags belong to an existing user; the add form stays the short username/email/password form.
        return [UserTagInline] if obj else []

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("role").prefetch_related("tags")

    @admin.display(description="tags")
    def tag_list(self, user):
        return ", ".join(str(tag) for tag in user.tags.all())

    @admin.display(description="waiting to be sent to Customer.io")
    def owed_to_customerio(self, user):
        """The person's outbox rows (profile, events, login link) and the last error, when a send failed."""
        waiting = list(user.outbox_entries.order_by("id"))
        if not waiting:
            return "nothing"
        kinds = Counter(entry.what for entry in waiting)
        summary = ", ".join(f"{count} × {what}" if count > 1 else what for what, count in kinds.items())
        failed = [entry for entry in waiting if entry.last_error]
        if failed:
            latest = failed[-1]
            next_at = f"{latest.next_attempt_at:%Y-%m-%d %H:%M}"
            summary += f" (tried {latest.attempts} times; next at {next_at}: {latest.last_error})"
        return summary

    def save_model(self, request, obj, form, change):
        # When and why go with the tick: an admin's tick says so, an admin's untick clears both.
        if "email_undeliverable" in form.changed_data:
            if obj.email_undeliverable:
                obj.email_undeliverable_at = timezone.now()
                obj.email_undeliverable_reason = f"Marked by {request.user.get_username()} in the admin"
            else:
                obj.email_undeliverable_at, obj.email_undeliverable_reason = None, ""
        super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        # The form's "groups" field has just been written; put the role's group back in step with the role.
        sync_role_group(form.instance)


@admin.register(Role)
class RoleAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "is_default", "webhook_assignable", "group"]
    list_filter = ["is_default", "webhook_assignable"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):
    list_display = ["name", "segment_id", "kind"]
    list_filter = ["kind"]
    search_fields = ["name", "segment_id"]


@admin.register(ActivityLog)
class ActivityLogAdmin(admin.ModelAdmin):
    list_display = ["created_at", "level", "source", "message", "user"]
    list_filter = ["level", "source", "created_at"]
    search_fields = ["message", "user__email", "=delivery_id"]
    date_hierarchy = "created_at"
    list_select_related = ["user"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(ImportRun)
class ImportRunAdmin(admin.ModelAdmin):
    """The runs of `manage.py cio_import_users`: where each stands and what it did. Written by the command only."""

    list_display = ["started_at", "segment_id", "status", "members_done", "created", "updated", "failed", "finished_at"]
    list_filter = ["status"]
    search_fields = ["segment_id"]
    exclude = ["cursor"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(AccessRule)
class AccessRuleAdmin(admin.ModelAdmin):
    """Pages only users with certain tags may open. A change reaches every web process within a second."""

    list_display = ["path", "prefix", "enabled", "required", "refused_get", "staff_pass"]
    list_filter = ["enabled", "prefix", "staff_pass"]
    search_fields = ["path", "message"]
    filter_horizontal = ["tags_any", "tags_all", "tags_none", "apply_tags"]
    fieldsets = (
        (None, {"fields": ("path", "prefix", "enabled")}),
        ("Who may open it", {"fields": ("tags_any", "tags_all", "tags_none", "staff_pass")}),
        ("What a refused user gets", {"fields": ("redirect_url", "message")}),
        ("On a visit", {"fields": ("apply_tags",)}),
    )

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("tags_any", "tags_all", "tags_none")

    @admin.display(description="needs")
    def required(self, rule):
        parts = []
        if rule.tags_any.all():
            parts.append("any of " + ", ".join(map(str, rule.tags_any.all())))
        if rule.tags_all.all():
            parts.append("all of " + ", ".join(map(str, rule.tags_all.all())))
        if rule.tags_none.all():
            parts.append("none of " + ", ".join(map(str, rule.tags_none.all())))
        return "; ".join(parts) or "a logged-in user"

    @admin.display(description="refused users get")
    def refused_get(self, rule):
        return f"redirect to {rule.redirect_url}" if rule.redirect_url else "403 page"


@admin.register(OutboxEntry)
class OutboxEntryAdmin(admin.ModelAdmin):
    """Profile changes, events and login links on their way to Customer.io (sent by webhook_worker). Read-only: the
    site's changes write them; a row leaves when Customer.io has it."""

    list_display = ["created_at", "user", "kind", "event_name", "attempts", "next_attempt_at", "last_error"]
    list_filter = ["kind"]
    search_fields = ["user__email", "event_name"]
    list_select_related = ["user"]
    exclude = ["event_id"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(SegmentChange)
class SegmentChangeAdmin(admin.ModelAdmin):
    """Tags applied or removed on the site, on their way to Customer.io's manual segments (sent by webhook_worker).
    Read-only: apply_tags / remove_tags and the user list's actions write them."""

    list_display = ["created_at", "user", "tag", "action", "attempts", "next_attempt_at", "sent_at", "last_error"]
    list_filter = ["action", ("sent_at", admin.EmptyFieldListFilter)]
    search_fields = ["user__email", "tag__name"]
    list_select_related = ["user", "tag"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
