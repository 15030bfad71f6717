"""What Customer.io tells the site is never sent back to it: after `update` and `add` webhooks (synchronous and
queued), no profile change waits in the outbox and no /api/v2/batch request is made, though the names they wrote are
mapped both ways."""

import pytest

from settings_app import freshness
from settings_app.models import FieldMapping
from users.models import OutboxEntry, User
from users.services import outbox_sender

from .conftest import make_user

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def names_both_ways(db):
    FieldMapping.objects.filter(user_field__in=["first_name", "last_name", "email"]).update(direction="both")
    freshness.changed("field_mappings")


def test_add_and_update_webhooks_send_nothing_back(hook, emulator):
    assert hook("add").status_code == 200
    user = User.objects.get(email="ann@example.com")
    assert user.first_name == "Ann"

    emulator.add_customer(email="bob@example.com", attributes={"first_name": "Bobby"}, segments=[1])
    bob = make_user("bob@example.com")
    outbox_sender.send_due()  # Bob was made on the site: that is news for Customer.io
    emulator.clear_requests()

    assert hook("update", email="bob@example.com").status_code == 200
    bob.refresh_from_db()
    assert bob.first_name == "Bobby"
    assert hook("update_tags", email="bob@example.com").status_code == 200

    assert not OutboxEntry.objects.exists()
    outbox_sender.send_due()
    assert emulator.requests("/api/v2/batch") == []
