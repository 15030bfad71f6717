"""The admin's pages for message events: the events (read-only, filtered by metric, channel, journey, date and whether
a user was found), the reactions (editable), and each user's message timeline on their own page.

The timeline is added to the users app's user page from here: users sits below webhooks and must not import it, so
this app registers a subclass of users.admin.UserAdmin in its place (Django's admin autodiscovery loads users' admin
first, INSTALLED_APPS order).
"""

from django.contrib import admin
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from users.admin import UserAdmin
from users.models import User

from ..models import MessageEvent, MessageReaction

# The timeline shows this many of a user's newest events, then links to all of them in the events' list.
TIMELINE_LENGTH = 50
# The journey filter offers the senders of this many newest events (reading further would scan the table).
JOURNEY_CHOICES_FROM = 5000


class ChoicesFilter(admin.SimpleListFilter):
    """A filter over a fixed list of values: Django's own filter for a plain text field would SELECT DISTINCT over the
    whole table at every page view."""

    values: list[str] = []

    def lookups(self, request, model_admin):
        return [(value, value) for value in self.values]

    def queryset(self, request, queryset):
        return queryset.filter(**{self.parameter_name: self.value()}) if self.value() else queryset


class MetricFilter(ChoicesFilter):
    title = "metric"
    parameter_name = "metric"
    values = MessageReaction.METRICS


class ChannelFilter(ChoicesFilter):
    title = "channel"
    parameter_name = "channel"
    values = MessageReaction.CHANNELS


class JourneyFilter(admin.SimpleListFilter):
    """What sent the message: a campaign (journey), broadcast, newsletter or transactional message, by id."""

    title = "journey"
    parameter_name = "journey"
    FIELDS = {
        "campaign": "campaign_id",
        "broadcast": "broadcast_id",
        "newsletter": "newsletter_id",
        "transactional": "transactional_message_id",
    }

    def lookups(self, request, model_admin):
        recent = MessageEvent.objects.order_by("-id")[:JOURNEY_CHOICES_FROM]
        found = set()
        for row in recent.values_list(*self.FIELDS.values()):
            found.update((kind, value) for kind, value in zip(self.FIELDS, row, strict=True) if value is not None)
        return [(f"{kind}:{value}", f"{kind} {value}") for kind, value in sorted(found)]

    def queryset(self, request, queryset):
        kind, _, value = (self.value() or "").partition(":")
        if kind in self.FIELDS and value.isdigit():
            return queryset.filter(**{self.FIELDS[kind]: int(value)})
        return queryset


@admin.register(MessageEvent)
class MessageEventAdmin(admin.ModelAdmin):
    """Read-only: the reporting webhook writes the events, the worker links them, prune_message_events deletes
    them."""

    list_display = ["occurred", "metric", "channel", "person", "user_link", "sent_by", "detail", "processed"]
    list_filter = [
        MetricFilter,
        ChannelFilter,
        JourneyFilter,
        ("occurred_at", admin.DateFieldListFilter),
        ("user", admin.EmptyFieldListFilter),
    ]
    search_fields = ["=event_id", "=delivery_id", "email", "recipient", "=cio_id"]
    ordering = ["-id"]  # the primary key's order, as received: occurred_at has no index (docs/performance.md)
    list_select_related = ["user"]
    show_full_result_count = False  # the filtered count alone: the total would count the whole table at each view

    @admin.display(description="when", ordering="occurred_at")
    def occurred(self, event):
        return f"{timezone.localtime(event.occurred_at):%Y-%m-%d %H:%M:%S}"

    @admin.display(description="sent to")
    def person(self, event):
        return event.recipient or event.email or event.cio_id or event.customer_id or "-"

    @admin.display(description="user", ordering="user")
    def user_link(self, event):
        if event.user_id is None:
            return "-"
        return format_html('<a href="{}">{}</a>', reverse("admin:users_user_change", args=[event.user_id]), event.user)

    @admin.display(description="sent by")
    def sent_by(self, event):
        return event.sent_by or "-"

    @admin.display(description="link or failure")
    def detail(self, event):
        return event.link or event.failure or ""

    @admin.display(description="processed", boolean=True)
    def processed(self, event):
        return event.processed_at is not None

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(MessageReaction)
class MessageReactionAdmin(admin.ModelAdmin):
    """What the site does when a message event about one of its users arrives. None until an admin adds one."""

    list_display = ["metric", "shown_channel", "kind", "tag", "enabled"]
    list_filter = ["enabled", "kind", "metric"]
    list_editable = ["enabled"]
    autocomplete_fields = ["tag"]
    fields = ["metric", "channel", "kind", "tag", "enabled"]

    @admin.display(description="channel", ordering="channel")
    def shown_channel(self, reaction):
        return reaction.channel or "any"


class UserWithMessagesAdmin(UserAdmin):
    """users.admin.UserAdmin with the user's message timeline below their Customer.io fields."""

    readonly_fields = [*UserAdmin.readonly_fields, "message_timeline"]

    def get_fieldsets(self, request, obj=None):
        fieldsets = list(super().get_fieldsets(request, obj))
        if obj is None:
            return fieldsets  # the add form
        names = [name for name, _ in fieldsets]
        after = names.index("Customer.io") + 1 if "Customer.io" in names else len(fieldsets)
        fieldsets.insert(after, ("Messages from Customer.io", {"fields": ["message_timeline"]}))
        return fieldsets

    @admin.display(description="timeline")
    def message_timeline(self, user):
        """The user's newest message events, newest first, and a link to all of them."""
        events = list(user.message_events.order_by("-occurred_at", "-id")[:TIMELINE_LENGTH])
        if not events:
            return "No message events from Customer.io yet."
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    f"{timezone.localtime(event.occurred_at):%Y-%m-%d %H:%M}",
                    event.channel or "-",
                    event.metric,
                    event.sent_by or "-",
                    event.link or event.failure or "",
                )
                for event in events
            ),
        )
        total = user.message_events.count()
        every = reverse("admin:webhooks_messageevent_changelist") + f"?user={user.pk}"
        shown = f"The newest {len(events)} of {total}" if total > len(events) else f"All {total}"
        return format_html(
            '<table class="message-timeline"><thead><tr><th>When</th><th>Channel</th><th>What happened</th>'
            "<th>Sent by</th><th>Link or failure</th></tr></thead><tbody>{}</tbody></table>"
            '<p>{} events. <a href="{}">See them in the message events list</a>.</p>',
            rows,
            shown,
            every,
        )


admin.site.unregister(User)
admin.site.register(User, UserWithMessagesAdmin)
