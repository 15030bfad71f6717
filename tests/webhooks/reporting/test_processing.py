"""The worker's part: each event linked to the user with its Customer.io id or email, the admin's reactions run for
it, message_event_received sent after the commit; an event whose person has no user waits for one, and is linked
(and reacted to) when that user appears."""

import io
from datetime import UTC, datetime

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from users.access import has_deliverable_email
from users.models import ActivityLog, Role, SegmentChange, Tag, User, UserTag
from webhooks.message_events.processing import process_batch
from webhooks.models import MessageEvent, MessageReaction
from webhooks.signals import message_event_received

from .conftest import event, post

pytestmark = pytest.mark.django_db(transaction=True)  # the signal goes out on commit

Kind = MessageReaction.Kind


@pytest.fixture
def received():
    """What message_event_received delivered: (event_id, user email or None)."""
    seen = []

    def receiver(sender, event, user, **kwargs):
        seen.append((event.event_id, user.email if user else None))

    message_event_received.connect(receiver, dispatch_uid="tests.received")
    yield seen
    message_event_received.disconnect(dispatch_uid="tests.received")


@pytest.fixture
def vip():
    return Tag.objects.create(segment_id=1, name="VIP", kind=Tag.Kind.MANUAL)


def user(email="ann@example.com", **extra):
    return User.objects.create_user(username=email, email=email, password="x", **extra)


def test_an_event_is_linked_by_cio_id_first_then_by_email(client, received):
    by_cio_id = user("ann.renamed@example.com", cio_id="cio-ann")  # her email changed on the site
    bob = user("bob@example.com")
    post(client, event(event_id="evt-ann"))
    bobs = event(event_id="evt-bob", recipient="BOB@example.com")
    bobs["data"]["identifiers"] = {"email": "Bob@Example.com"}
    post(client, bobs)

    assert process_batch() == 2
    rows = {row.event_id: row for row in MessageEvent.objects.all()}
    assert rows["evt-ann"].user == by_cio_id
    assert rows["evt-bob"].user == bob
    assert all(row.processed_at and row.unlinked_key is None for row in rows.values())
    assert sorted(received) == [("evt-ann", "ann.renamed@example.com"), ("evt-bob", "bob@example.com")]
    assert process_batch() == 0  # nothing twice


def test_an_unknown_person_s_event_waits_and_is_linked_when_the_user_appears(client, received, vip):
    MessageReaction.objects.create(metric="clicked", kind=Kind.APPLY_TAG, tag=vip)
    post(client, event(metric="clicked", event_id="evt-early", href="https://example.com/join"))
    assert process_batch() == 1
    early = MessageEvent.objects.get()
    assert (early.user, early.unlinked_key) == (None, "email:ann@example.com")
    assert received == [("evt-early", None)]

    ann = user("Ann@Example.com")  # signs up later (any case)

    early.refresh_from_db()
    assert early.user == ann
    assert early.processed_at is None  # waiting for the worker again: the reactions are its job
    assert not UserTag.objects.filter(user=ann).exists()
    assert process_batch() == 1
    assert list(UserTag.objects.filter(user=ann).values_list("tag__name", flat=True)) == ["VIP"]
    assert received == [("evt-early", None), ("evt-early", "Ann@Example.com")]


def test_a_user_whose_email_changes_to_the_person_s_gets_their_events(client):
    post(client, event(event_id="evt-for-ann"))
    process_batch()
    someone = user("someone@example.com")
    assert MessageEvent.objects.get().user is None
    someone.email = "ann@example.com"
    someone.save()  # the admin's form saves every field
    assert MessageEvent.objects.get().user == someone


def test_a_login_does_not_look_for_waiting_events(client):
    ann = user()
    ann.last_login = datetime(2026, 1, 1, tzinfo=UTC)
    with CaptureQueriesContext(connection) as queries:
        ann.save(update_fields=["last_login"])
    assert not any("webhooks_messageevent" in query["sql"] for query in queries.captured_queries)


def test_apply_and_remove_tag_reactions_go_through_users_access(client, vip):
    newsletter = Tag.objects.create(segment_id=2, name="Newsletter", kind=Tag.Kind.MANUAL)
    ann = user()
    UserTag.objects.create(user=ann, tag=newsletter)
    MessageReaction.objects.create(metric="clicked", kind=Kind.APPLY_TAG, tag=vip)
    MessageReaction.objects.create(metric="unsubscribed", kind=Kind.REMOVE_TAG, tag=newsletter)
    MessageReaction.objects.create(metric="unsubscribed", kind=Kind.APPLY_TAG, tag=vip, enabled=False)

    post(client, event(metric="clicked", event_id="evt-click"))
    post(client, event(metric="unsubscribed", event_id="evt-unsub"))
    process_batch()

    assert list(UserTag.objects.filter(user=ann).values_list("tag__name", flat=True)) == ["VIP"]
    # Manual segments follow in Customer.io through the outbox, as for any apply_tags / remove_tags.
    assert sorted(SegmentChange.objects.values_list("tag__name", "action")) == [
        ("Newsletter", "remove"),
        ("VIP", "add"),
    ]
    messages = list(ActivityLog.objects.filter(user=ann).order_by("id").values_list("message", flat=True))
    assert messages == [
        "Applied tag VIP to ann@example.com on the email clicked event evt-click.",
        "Removed tag Newsletter from ann@example.com on the email unsubscribed event evt-unsub.",
    ]


def test_mark_undeliverable_on_a_bounce(client):
    MessageReaction.objects.create(metric="bounced", channel="email", kind=Kind.MARK_UNDELIVERABLE)
    ann = user()
    assert has_deliverable_email(ann)
    bounced = event(metric="bounced", event_id="evt-bounce", failure_message="550 mailbox unavailable")
    bounced["timestamp"] = 1_765_000_000
    post(client, bounced)
    process_batch()

    ann.refresh_from_db()
    assert ann.email_undeliverable
    assert ann.email_undeliverable_at == datetime.fromtimestamp(1_765_000_000, tz=UTC)
    assert ann.email_undeliverable_reason == ("Customer.io: email bounced event evt-bounce (550 mailbox unavailable)")
    assert not has_deliverable_email(ann)
    assert ActivityLog.objects.get(user=ann).message == (
        "Marked the email of ann@example.com undeliverable: Customer.io: email bounced event evt-bounce "
        "(550 mailbox unavailable)"
    )


def test_undeliverable_only_for_the_user_s_current_address_and_only_for_email(client):
    MessageReaction.objects.create(metric="bounced", kind=Kind.MARK_UNDELIVERABLE)  # any channel
    ann = user("ann.new@example.com", cio_id="cio-ann")
    post(client, event(metric="bounced", event_id="evt-old-address"))  # sent to ann@example.com before she moved
    sms = event(metric="bounced", event_id="evt-sms", channel="sms", recipient="+15555550100")
    post(client, sms)
    process_batch()
    ann.refresh_from_db()
    assert not ann.email_undeliverable
    assert MessageEvent.objects.filter(user=ann).count() == 2


def test_no_reactions_by_default(client, vip):
    ann = user()
    for metric in ("sent", "delivered", "opened", "clicked", "bounced", "spammed", "unsubscribed"):
        post(client, event(metric=metric, event_id=f"evt-{metric}"))
    process_batch()
    ann.refresh_from_db()
    assert not UserTag.objects.exists()
    assert not ann.email_undeliverable
    assert not ActivityLog.objects.exists()


def test_reactions_never_touch_a_staff_account_s_role(client, vip):
    MessageReaction.objects.create(metric="clicked", kind=Kind.APPLY_TAG, tag=vip)
    MessageReaction.objects.create(metric="clicked", kind=Kind.MARK_UNDELIVERABLE)
    admin = User.objects.create_superuser("ann@example.com", "ann@example.com", "x")
    role = admin.role
    post(client, event(metric="clicked"))
    process_batch()
    admin.refresh_from_db()
    assert (admin.is_staff, admin.is_superuser, admin.role) == (True, True, role)
    assert UserTag.objects.filter(user=admin, tag=vip).exists()  # tags, as users.access allows for staff
    assert Role.objects.filter(pk=role.pk).exists()


def test_a_reaction_that_cannot_be_done_is_logged_and_the_others_run(client, vip):
    data_driven = Tag.objects.create(segment_id=3, name="Active customers", kind=Tag.Kind.DATA_DRIVEN)
    MessageReaction.objects.create(metric="clicked", kind=Kind.APPLY_TAG, tag=data_driven)  # as if saved before
    MessageReaction.objects.create(metric="clicked", kind=Kind.APPLY_TAG, tag=vip)
    ann = user()
    post(client, event(metric="clicked"))
    process_batch()
    assert list(UserTag.objects.filter(user=ann).values_list("tag__name", flat=True)) == ["VIP"]
    warning = ActivityLog.objects.get(level=ActivityLog.Level.WARNING)
    assert warning.message.startswith(
        "Could not apply tag Active customers for ann@example.com on the email clicked event "
        "01HREPORTING0000000000001: "
    )
    assert MessageEvent.objects.get().processed_at is not None


def test_a_failing_reaction_does_not_hold_the_batch(client, vip, monkeypatch):
    from webhooks.message_events import processing

    def broken(event, user, reactions):
        raise RuntimeError("a defect")

    monkeypatch.setattr(processing, "react", broken)
    MessageReaction.objects.create(metric="clicked", kind=Kind.APPLY_TAG, tag=vip)
    user()
    post(client, event(metric="clicked", event_id="evt-1"))
    post(client, event(metric="opened", event_id="evt-2"))
    assert process_batch() == 2
    assert MessageEvent.objects.filter(processed_at__isnull=True).count() == 0
    error = ActivityLog.objects.get(level=ActivityLog.Level.ERROR)
    assert error.message == (
        "Reactions to the email clicked event evt-1 for ann@example.com failed: RuntimeError: a defect"
    )


def test_people_an_import_creates_get_the_events_waiting_for_them(client, cio_emulator):
    """cio_import_users writes users in bulk, without post_save: the events waiting under their emails or
    Customer.io ids, processed or not yet, are linked to them once the step commits."""
    cio_emulator.add_segment(id=1, name="Everyone")
    for name in ("ann", "bob", "cara"):
        cio_emulator.add_customer(email=f"{name}@example.com", cio_id=f"cio-{name}", segments=[1])
    post(client, event(event_id="evt-ann"))
    process_batch()  # Ann has no user yet: her event waits under her email
    bobs = event(event_id="evt-bob")
    bobs["data"].update(identifiers={"cio_id": "cio-bob"}, customer_id="", recipient="")
    post(client, bobs)
    process_batch()  # Bob's waits under his Customer.io id
    caras = event(event_id="evt-cara")
    caras["data"].update(identifiers={"email": "Cara@Example.com"}, customer_id="", recipient="Cara@Example.com")
    post(client, caras)  # Cara's is not processed yet when the import creates her
    assert MessageEvent.objects.filter(user__isnull=False).count() == 0

    call_command("cio_import_users", "--segment", "1", stdout=io.StringIO())

    linked = {row.event_id: row.user.email for row in MessageEvent.objects.select_related("user")}
    assert linked == {"evt-ann": "ann@example.com", "evt-bob": "bob@example.com", "evt-cara": "cara@example.com"}
    assert MessageEvent.objects.filter(processed_at__isnull=True).count() == 3  # each processed again, with its user


def test_users_created_in_bulk_with_nothing_waiting_cost_a_few_queries_not_one_each():
    from users.signals import users_created_in_bulk

    role = Role.get_default()
    users = User.objects.bulk_create(
        [
            User(
                username=f"u{n}",
                email=f"u{n}@example.com",
                email_normalized=f"u{n}@example.com",
                cio_id=f"c{n}",
                role=role,
            )
            for n in range(1200)
        ]
    )
    with CaptureQueriesContext(connection) as queries:
        users_created_in_bulk.send(sender=User, users=users)
    assert len(queries) == 5 + 3 + 3  # 2,400 keys, 1,200 emails, 1,200 Customer.io ids: 500 a query
    assert MessageEvent.objects.count() == 0


def test_a_tag_the_site_has_not_classified_is_asked_about_before_the_batch(client, emulator):
    from tests.webhooks.conftest import app_calls

    vip = Tag.objects.create(segment_id=1, name="VIP")  # first seen through a webhook: its kind not known yet
    MessageReaction.objects.create(metric="clicked", kind=Kind.APPLY_TAG, tag=vip)
    ann = user()
    post(client, event(metric="clicked"))
    process_batch()
    vip.refresh_from_db()
    assert vip.kind == Tag.Kind.MANUAL
    assert UserTag.objects.filter(user=ann, tag=vip).exists()
    assert app_calls(emulator) == [("GET", "/v1/segments/1")]
    process_batch()  # known now: not asked again
    assert len(app_calls(emulator)) == 1


def test_a_click_on_a_login_or_set_password_link_keeps_no_token(client):
    for n, href in enumerate(
        [
            "https://mydomain.com/accounts/login-link/2a-tb4x2k9-3f9a8c7d6e5f4a3b/",
            "https://mydomain.com/accounts/reset/Mg/cabc12-0123456789abcdef/",
        ]
    ):
        post(client, event("clicked", event_id=f"01HREPORTINGCLICK00000000{n}", href=href))
    links = list(MessageEvent.objects.values_list("link", flat=True))
    assert len(links) == 2
    assert not any("3f9a8c7d6e5f4a3b" in link or "0123456789abcdef" in link for link in links)


def test_an_address_another_customerio_person_holds_on_the_site_is_not_theirs(client):
    user("ann@example.com", cio_id="cio-someone-else")
    post(client, event(event_id="evt-not-hers"))
    process_batch()
    assert MessageEvent.objects.get().user is None


def test_an_event_not_processed_yet_is_linked_when_its_user_appears(client):
    post(client, event(event_id="evt-early"))
    ann = user()  # before the worker took the event: linked at once, processed with its user
    assert MessageEvent.objects.get().user == ann
    process_batch()
    assert MessageEvent.objects.get().processed_at is not None
