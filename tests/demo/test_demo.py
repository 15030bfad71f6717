"""The demo members area `make run` adds, walked through as the quick tour of docs/index.md does, against the emulator
loaded with the demo fixture."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

from settings_app.models import WebhookSettings
from users.models import SegmentChange, User

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
DEMO_FIXTURE = ROOT / "cio_emulator" / "demo.json"


@pytest.fixture
def demo(cio_emulator):
    cio_emulator.reset(json.loads(DEMO_FIXTURE.read_text()))
    out = io.StringIO()
    call_command("demo_setup", stdout=out)
    assert "Demo logins (password 'demo')" in out.getvalue()
    return cio_emulator


def update_tags(client, email):
    key = WebhookSettings.load().access_key
    response = client.post(f"/?wpf_action=update_tags&access_key={key}", {"email": email}, "application/json")
    assert response.status_code == 200, response.content


def log_in(client, email):
    client.logout()
    # Through the login form: django-axes wants the request that every real login carries.
    assert client.post("/accounts/login/", {"username": email, "password": "demo"}).status_code == 302


def test_the_quick_tour(client, demo, django_capture_on_commit_callbacks):
    assert client.get("/members/")["Location"] == "/accounts/login/?next=/members/"
    log_in(client, "ann@example.com")
    assert client.get("/members/").status_code == 403  # no tags yet
    vip = client.get("/vip/").content.decode()
    assert "Ask us how to join" in vip

    update_tags(client, "ann@example.com")  # ann: VIP, Newsletter, Active customers
    members = client.get("/members/")
    assert members.status_code == 200
    assert "Members area" in members.content.decode()
    assert "Welcome, VIP" in client.get("/vip/").content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        started = client.get("/members/start/")
    assert "You now hold the" in started.content.decode()
    ann = User.objects.get(email="ann@example.com")
    assert ann.has_tag("Started the course")
    assert SegmentChange.objects.filter(user=ann, tag__name="Started the course", action="add").exists()
    assert "Welcome back" in client.get("/members/start/").content.decode()


def test_payment_failed_locks_people_out_of_the_members_area(client, demo):
    log_in(client, "bob@example.com")
    update_tags(client, "bob@example.com")  # bob: Active customers, but Payment failed
    response = client.get("/members/")
    assert response["Location"] == "/payment-failed/?next=/members/"
    assert "Your last payment failed" in client.get("/payment-failed/").content.decode()
    assert "Ask us how to join" in client.get("/vip/").content.decode()


@pytest.mark.parametrize("email", ["cara@example.com", "bob@example.com"])  # a new contact, a demo login
def test_the_readme_add_with_role_customer_works_on_the_demo(client, demo, email):
    key = WebhookSettings.load().access_key
    response = client.post(f"/?wpf_action=add&role=customer&access_key={key}", {"email": email}, "application/json")
    assert response.status_code == 200, response.content
    assert User.objects.get(email_normalized=email).role.slug == "customer"


def test_production_settings_do_not_install_the_demo():
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "wpfusion_site.settings",
        "SECRET_KEY": "x",
        "DEBUG": "0",
        "ENV_FILE": os.devnull,
    }
    env.pop("ENABLE_DEMO", None)
    code = (
        "import django; django.setup(); from django.apps import apps; from django.urls import resolve, Resolver404\n"
        "try:\n    resolve('/members/'); print('routed')\nexcept Resolver404:\n    print('no route')\n"
        "print(apps.is_installed('demo'))"
    )
    answer = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert answer.stdout.split() == ["no", "route", "False"], answer.stderr
