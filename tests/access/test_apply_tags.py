"""apply_tags / remove_tags: the site's tags change at once (with the signals), data-driven segments are refused,
and a change on its way to Customer.io is not undone by a Customer.io read that does not show it yet."""

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from users.access import NotAManualSegment, apply_tags, has_tag, remove_tags
from users.models import SegmentChange, Tag, User, UserTag
from users.signals import tags_applied, tags_modified, tags_removed

pytestmark = pytest.mark.django_db

FIXTURE = {
    "segments": [
        {"id": 10, "name": "Course done", "type": "manual"},
        {"id": 11, "name": "Active customers", "type": "dynamic"},
        {"id": 12, "name": "Newsletter", "type": "manual"},
    ],
    "customers": [
        {"email": "ann@example.com", "cio_id": "cio-ann", "segments": [11, 12]},
    ],
}


@pytest.fixture
def cio(cio_emulator):
    cio_emulator.reset(FIXTURE)
    return cio_emulator


@pytest.fixture
def course(db):
    return Tag.objects.create(segment_id=10, name="Course done", kind=Tag.Kind.MANUAL)


@pytest.fixture
def newsletter(db):
    return Tag.objects.create(segment_id=12, name="Newsletter", kind=Tag.Kind.MANUAL)


@pytest.fixture
def ann(db):
    return User.objects.create_user(username="ann", email="ann@example.com", cio_id="cio-ann")


@pytest.fixture
def signal_log():
    received = []

    def make(name):
        def receiver(sender, user, tags, **kwargs):
            received.append((name, user.username, sorted(str(tag) for tag in tags)))

        return receiver

    receivers = {signal: make(name) for signal, name in ((tags_applied, "applied"), (tags_removed, "removed"))}
    receivers[tags_modified] = make("modified")
    for signal, receiver in receivers.items():
        signal.connect(receiver)
    yield received
    for signal, receiver in receivers.items():
        signal.disconnect(receiver)


def tag_names(user) -> list[str]:
    return sorted(str(user_tag.tag) for user_tag in UserTag.objects.filter(user=user).select_related("tag"))


def test_apply_and_remove_change_the_site_at_once_and_queue_customer_io(
    ann, course, signal_log, django_capture_on_commit_callbacks
):
    assert not has_tag(ann, "Course done")
    with django_capture_on_commit_callbacks(execute=True):
        change = apply_tags(ann, "course done")
    assert [str(tag) for tag in change.applied] == ["Course done"]
    assert has_tag(ann, "Course done")  # the same user object sees it at once
    assert tag_names(ann) == ["Course done"]
    assert signal_log == [("applied", "ann", ["Course done"]), ("modified", "ann", ["Course done"])]
    assert list(SegmentChange.objects.values_list("tag__segment_id", "action", "sent_at")) == [(10, "add", None)]

    signal_log.clear()
    with django_capture_on_commit_callbacks(execute=True):
        apply_tags(ann, 10)  # already held: nothing changes, nothing is sent
    assert signal_log == []
    assert SegmentChange.objects.count() == 1

    with django_capture_on_commit_callbacks(execute=True):
        remove_tags(ann, [course])
    assert not has_tag(ann, "Course done")
    assert signal_log == [("removed", "ann", ["Course done"]), ("modified", "ann", [])]
    assert list(SegmentChange.objects.order_by("id").values_list("action", flat=True)) == ["add", "remove"]


def test_a_data_driven_segment_is_refused_with_a_clear_message(ann, cio):
    Tag.objects.create(segment_id=11, name="Active customers", kind=Tag.Kind.DATA_DRIVEN)
    with pytest.raises(NotAManualSegment) as refused:
        apply_tags(ann, "Active customers")
    message = str(refused.value)
    assert '"Active customers" (segment 11) is a data-driven segment in Customer.io' in message
    assert "only manual segments" in message
    assert tag_names(ann) == [] and SegmentChange.objects.count() == 0
    with pytest.raises(NotAManualSegment):
        remove_tags(ann, 11)


def test_a_tag_first_seen_through_a_webhook_has_its_kind_found_out(ann, cio):
    unknown_kind = Tag.objects.create(segment_id=11, name="Active customers")  # as update_tags creates it
    cio.clear_requests()
    with pytest.raises(NotAManualSegment):
        apply_tags(ann, unknown_kind)
    assert [entry["path"] for entry in cio.requests()] == ["/v1/segments/11"]
    assert Tag.objects.get(segment_id=11).kind == Tag.Kind.DATA_DRIVEN
    manual_unknown = Tag.objects.create(segment_id=12, name="Newsletter")
    apply_tags(ann, manual_unknown)
    assert Tag.objects.get(segment_id=12).kind == Tag.Kind.MANUAL
    assert tag_names(ann) == ["Newsletter"]


def webhook(client, action="update_tags", email="ann@example.com"):
    from settings_app.models import WebhookSettings

    key = WebhookSettings.load().access_key
    response = client.post(f"/?wpf_action={action}&access_key={key}", {"email": email}, "application/json")
    assert response.status_code == 200, response.content
    return response


def test_an_applied_tag_stays_while_customer_io_does_not_show_it_yet(
    client, ann, course, cio, signal_log, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        apply_tags(ann, course)
    signal_log.clear()
    with django_capture_on_commit_callbacks(execute=True):
        webhook(client)  # Customer.io: Active customers and Newsletter, not Course done yet
    assert tag_names(ann) == ["Active customers", "Course done", "Newsletter"]
    assert ("removed", "ann", ["Course done"]) not in signal_log
    assert ("applied", "ann", ["Active customers", "Newsletter"]) in signal_log
    assert not [entry for entry in signal_log if "Course done" in entry[2] and entry[0] != "modified"]

    # Sent long ago and Customer.io still says no: Customer.io wins (someone removed it there).
    SegmentChange.objects.update(sent_at=timezone.now() - timedelta(days=1))
    webhook(client)
    assert tag_names(ann) == ["Active customers", "Newsletter"]


def test_a_removed_tag_is_not_put_back_by_a_read_that_still_shows_it(
    client, ann, newsletter, cio, signal_log, django_capture_on_commit_callbacks
):
    webhook(client)
    assert tag_names(ann) == ["Active customers", "Newsletter"]
    remove_tags(ann, "Newsletter")
    signal_log.clear()
    with django_capture_on_commit_callbacks(execute=True):
        webhook(client)  # Customer.io still lists Newsletter
    assert tag_names(ann) == ["Active customers"]
    assert [entry[0] for entry in signal_log] == ["modified"]


def test_resync_keeps_changes_on_their_way(ann, course, newsletter, cio):
    apply_tags(ann, course)
    remove_tags(ann, newsletter)  # not held: nothing to remove, nothing queued
    UserTag.objects.create(user=ann, tag=newsletter)
    remove_tags(ann, newsletter)
    call_command("cio_resync_tags", "--all", stdout=io.StringIO(), stderr=io.StringIO())
    assert tag_names(ann) == ["Active customers", "Course done"]
    call_command("cio_resync_tags", "--user", "ann@example.com", stdout=io.StringIO(), stderr=io.StringIO())
    assert tag_names(ann) == ["Active customers", "Course done"]


def test_the_admin_applies_and_removes_a_manual_tag_for_selected_users(admin_client, ann, course, cio):
    bob = User.objects.create_user(username="bob", email="bob@example.com")
    Tag.objects.create(segment_id=11, name="Active customers", kind=Tag.Kind.DATA_DRIVEN)
    url = "/admin/users/user/"
    selected = {"action": "apply_a_tag", "_selected_action": [ann.pk, bob.pk]}
    form = admin_client.post(url, selected)
    assert form.status_code == 200
    page = form.content.decode()
    assert "Course done" in page and "Active customers" not in page  # only manual segments are offered
    done = admin_client.post(url, {**selected, "tag": course.pk}, follow=True)
    assert [str(m) for m in done.context["messages"]] == [
        '"Course done" applied to 2 user(s); Customer.io follows in the background.'
    ]
    assert tag_names(ann) == tag_names(bob) == ["Course done"]
    assert SegmentChange.objects.filter(action="add").count() == 2
    admin_client.post(url, {"action": "remove_a_tag", "_selected_action": [bob.pk], "tag": course.pk})
    assert tag_names(bob) == [] and tag_names(ann) == ["Course done"]


def test_the_admin_lists_tag_changes_on_their_way(admin_client, ann, course):
    apply_tags(ann, course)
    page = admin_client.get("/admin/users/segmentchange/?sent_at__isnull=True").content.decode()
    assert "Course done" in page and "ann" in page


def test_a_later_change_waits_for_an_earlier_one_another_worker_holds(ann, course, cio):
    from users.services.segment_sender import send_due

    apply_tags(ann, course)
    SegmentChange.objects.update(claimed_until=timezone.now() + timedelta(minutes=1))  # another worker sends it
    remove_tags(ann, course)
    cio.clear_requests()
    assert send_due().calls == 0  # the removal must not overtake the add
    assert cio.requests("/api/v1/segments/") == []
    SegmentChange.objects.update(claimed_until=None)  # that worker died; its lease ran out
    summary = send_due()
    assert (summary.calls, summary.sent) == (1, 2)
    assert [entry["path"] for entry in cio.requests("/api/v1/segments/")] == ["/api/v1/segments/10/remove_customers"]


def test_a_tag_created_a_moment_ago_can_be_applied_by_name(ann, course, monkeypatch):
    from settings_app import freshness

    apply_tags(ann, "Course done")  # the index of names is loaded
    monkeypatch.setattr(freshness, "REVALIDATE_SECONDS", 3600.0)
    Tag.objects.bulk_create([Tag(segment_id=13, name="Lesson 2", kind=Tag.Kind.MANUAL)])  # as update_tags does
    apply_tags(ann, "lesson 2")
    assert tag_names(ann) == ["Course done", "Lesson 2"]
