"""Queued `add`s with Return Password on: the worker hashes the batch's generated passwords on its process pool,
ahead of and outside the processing. What a user notices: each new person has exactly one password, the one
Customer.io got back."""

import pytest

from users.models import User
from webhooks.models import WebhookDelivery

from ..conftest import set_settings
from .workers import queued, run_worker_until_idle

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_a_batch_of_new_people_each_get_the_password_returned_to_them(client, worker_env, cio_emulator):
    people = [f"new{n}@example.com" for n in range(6)]
    cio_emulator.load({"customers": [{"email": email, "attributes": {"first_name": "New"}} for email in people]})
    User.objects.create(username="existing", email="new0@example.com")  # exists: no password is generated
    set_settings(return_password=True, return_password_field="site_password")
    for email in people:
        queued(client, "add", email=email)

    run_worker_until_idle(worker_env)

    assert WebhookDelivery.objects.filter(status="succeeded").count() == len(people)
    returns = cio_emulator.requests("/api/v1/customers/")
    assert len(returns) == len(people) - 1  # one each, by cio_id
    for email in people[1:]:
        user = User.objects.get(email=email)
        assert user.check_password(cio_emulator.customer(email)["attributes"]["site_password"])
        assert not user.password_return_due
    assert User.objects.get(email="new0@example.com").password == ""
