"""cio_sync_segments: Customer.io segments -> Tag rows."""

import pytest
from django.test import override_settings

from users.models import ActivityLog, Tag, UserTag

from .conftest import SEGMENTS, app_calls, assert_reads_as_a_dry_run, make_users, run, tags_of

pytestmark = pytest.mark.django_db


def test_new_segments_become_tags_and_changed_ones_are_updated(emulator):
    emulator.reset({"segments": SEGMENTS})
    Tag.objects.create(segment_id=1, name="Old name", kind="manual")
    Tag.objects.create(segment_id=2, name="Even", kind="manual")

    outcome = run("cio_sync_segments")

    assert outcome.code == 0, outcome.text
    assert "3 created, 1 updated, 1 unchanged, 0 skipped, 0 failed" in outcome.out
    assert "Customer.io calls used: 1 (1 App API, 0 Track API)" in outcome.out
    assert sorted(Tag.objects.values_list("segment_id", "name", "kind")) == [
        (1, "Everyone", "data_driven"),
        (2, "Even", "manual"),
        (3, "Thirds", "data_driven"),
        (4, "Fifths", "manual"),
        (5, "Sevenths", "data_driven"),
    ]
    assert len(app_calls(emulator)) == 1
    assert ActivityLog.objects.filter(source="backfill", message__startswith="Synced segments").exists()


def test_segments_gone_from_customerio_are_kept_unless_pruned(emulator, signal_log, django_capture_on_commit_callbacks):
    emulator.reset({"segments": SEGMENTS})
    gone = Tag.objects.create(segment_id=99, name="Retired")
    [user] = make_users([1])
    user.tags.add(gone, Tag.objects.create(segment_id=1, name="Everyone"))

    kept = run("cio_sync_segments")
    assert kept.code == 0
    assert "1 tag(s) whose segment is gone from Customer.io kept (--prune deletes them): Retired (99)" in kept.out
    assert tags_of(user) == [1, 99]

    with django_capture_on_commit_callbacks(execute=True):
        pruned = run("cio_sync_segments", "--prune")
    assert pruned.code == 0
    assert "deleted: Retired (99)" in pruned.out
    assert not Tag.objects.filter(segment_id=99).exists()
    assert tags_of(user) == [1]
    assert signal_log.events == [("removed", user.email, [99]), ("modified", user.email, [1])]


def test_dry_run_writes_nothing(emulator, activity_lines):
    emulator.reset({"segments": SEGMENTS})
    Tag.objects.create(segment_id=99, name="Retired")
    outcome = run("cio_sync_segments", "--prune", "--dry-run")
    assert outcome.code == 0
    assert outcome.out.startswith(
        "cio_sync_segments: Dry run (nothing written): 5 would be created, 0 would be updated"
    )
    assert "1 tag(s) whose segment is gone from Customer.io would be deleted: Retired (99)" in outcome.out
    assert_reads_as_a_dry_run(outcome)
    assert list(Tag.objects.values_list("segment_id", flat=True)) == [99]
    assert not ActivityLog.objects.exists()
    assert activity_lines() == []
    assert UserTag.objects.count() == 0


def test_missing_credentials_are_one_clear_line(emulator):
    with override_settings(CUSTOMERIO_APP_API_KEY=""):
        outcome = run("cio_sync_segments")
    assert outcome.code == 1
    assert outcome.out == ""
    assert outcome.err.strip() == (
        "CommandError: Customer.io is not configured: Customer.io App API key is not set (CUSTOMERIO_APP_API_KEY)."
    )
    assert emulator.requests() == []


def test_customerio_down_is_one_clear_line(emulator):
    emulator.set_faults(fail_rate=1.0, fail_status=503)
    outcome = run("cio_sync_segments")
    assert outcome.code == 1
    assert outcome.error.startswith("CommandError: Customer.io is not answering: Customer.io GET /v1/segments: 503")
    assert "Traceback" not in outcome.text
