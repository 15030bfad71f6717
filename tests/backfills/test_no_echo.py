"""What the backfills bring from Customer.io is never sent back to it: after cio_import_users and cio_pull_meta no
profile change waits in the outbox, though the fields they wrote are mapped both ways."""

import pytest

from settings_app import freshness
from settings_app.models import FieldMapping
from users.models import OutboxEntry, User
from users.services import outbox_sender

from .conftest import make_users, population, run

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def everything_both_ways(db):
    FieldMapping.objects.exclude(user_field="password").filter(direction="pull").update(direction="both")
    freshness.changed("field_mappings")


def test_an_import_sends_nothing_back(emulator, segment):
    assert run("cio_import_users", "--segment", "1").code == 0
    assert User.objects.count() > 0
    assert not OutboxEntry.objects.exists()


def test_a_meta_pull_sends_nothing_back(emulator):
    emulator.reset(population(50))
    make_users(range(50))  # bulk-made: nothing queued for them
    assert not OutboxEntry.objects.exists()

    outcome = run("cio_pull_meta", "--all")

    assert outcome.code == 0 and "updated" in outcome.out
    assert User.objects.exclude(first_name="").exists()
    assert not OutboxEntry.objects.exists()
    emulator.clear_requests()
    outbox_sender.send_due()
    assert emulator.requests("/api/v2/batch") == []
