"""An import and webhooks for the same people at once. Runs on PostgreSQL in CI, where the two really overlap."""

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from django.conf import settings as django_settings

from settings_app.models import WebhookSettings
from users.models import User

from .conftest import population, set_site_settings

pytestmark = [pytest.mark.concurrency, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PEOPLE = 600


def test_webhooks_adding_people_an_import_is_creating(live_server, emulator_env, cio_emulator, settings):
    """One user per person whoever creates them first, and each one's password is the one Customer.io holds."""
    cio_emulator.reset(population(PEOPLE))
    cio_emulator.configure(rate_limit=0)
    # The import's attribute reads are slow, so that the webhooks arrive while it runs.
    cio_emulator.set_faults(latency_ms=120, path_prefix="/v1/customers/attributes")
    settings.CUSTOMERIO_APP_API_RATE = 0
    settings.WEBHOOK_SYNC_DEADLINE = 20
    set_site_settings(return_password=True, return_password_field="site_password")
    url = f"{live_server.url}/?wpf_action=add&access_key={WebhookSettings.load().access_key}"
    importing = subprocess.Popen(
        [sys.executable, "manage.py", "cio_import_users", "--segment", "1"],
        cwd=django_settings.BASE_DIR,
        env={**emulator_env, "CUSTOMERIO_APP_API_RATE": "0"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not cio_emulator.requests("/v1/customers/attributes") and time.monotonic() < deadline:
            time.sleep(0.02)

        def add(n):
            return requests.post(url, json={"email": f"person{n}@example.com"}, timeout=60).status_code

        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(add, range(0, PEOPLE, 4)))
        out, err = importing.communicate(timeout=120)
    finally:
        importing.kill()

    assert importing.returncode == 0, out + err
    assert statuses == [200] * len(statuses)
    assert User.objects.count() == PEOPLE
    assert not User.objects.filter(password_return_due=True).exists()
    for user in User.objects.filter(email__in=[f"person{n}@example.com" for n in range(0, PEOPLE, 37)]):
        assert user.check_password(cio_emulator.customer(user.email)["attributes"]["site_password"])
