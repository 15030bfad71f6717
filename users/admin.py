from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm

from .models import ActivityLog, ImportRun, Role, Tag, User, UserTag
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
    readonly_fields = ["applied_at"]


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
        ("Customer.io", {"fields": ("role", "tag_list", "cio_id", "meta")}),
        *DjangoUserAdmin.fieldsets[2:],
    )
    readonly_fields = ["tag_list"]
    list_display = ["username", "email", "first_name", "last_name", "role", "tag_list", "is_staff", "date_joined"]
    list_filter = ["role", "is_staff", "is_superuser", "is_active", "tags"]
    search_fields = ["username", "email", "first_name", "last_name", "cio_id"]

    def get_inlines(self, request, obj):
        # Tags belong to an existing user; the add form stays the short username/email/password form.
        return [UserTagInline] if obj else []

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("role").prefetch_related("tags")

    @admin.display(description="tags")
    def tag_list(self, user):
        return ", ".join(str(tag) for tag in user.tags.all())

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
