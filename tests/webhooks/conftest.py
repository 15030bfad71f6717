import json
import logging

import pytest
from django.core.cache import cache

from settings_app import freshness
from settings_app.models import WebhookSettings
from users.models import User

FIXTURE = {
    "segments": [
        {"id": 1, "name": "VIP", "type": "manual"},
        {"id": 2, "name": "Newsletter", "type": "manual"},
        {"id": 3, "name": "Active customers", "type": "dynamic"},
    ],
    "customers": [
        {
            "email": "ann@example.com",
            "id": "ann",
            "attributes": {"first_name": "Ann", "last_name": "Smith", "plan": "gold", "user_pass": "from-cio-Pa55"},
            "segments": [1, 2],
        },
        {"email": "bob@example.com", "id": "bob", "attributes": {"first_name": "Bob"}, "segments": [3]},
        {
            "email": "cara+news@example.com",
            "id": "cara",
            "attributes": {"first_name": "Cara", "role": "customer"},
            "segments": [],
        },
    ],
}


@pytest.fixture
def emulator(cio_emulator):
    cio_emulator.reset(FIXTURE)
    return cio_emulator


@pytest.fixture
def access_key(db):
    return WebhookSettings.load().access_key


class Hook:
    """Calls the webhook the way Customer.io does: the URL from the guide, a JSON body."""

    def __init__(self, client, access_key):
        self.client = client
        self.access_key = access_key

    def url(self, action=None, key=None, path="/", **params):
        query = {}
        if action is not None:
            query["wpf_action"] = action
        query["access_key"] = self.access_key if key is None else key
        query.update(params)
        return path + "?" + "&".join(f"{name}={value}" for name, value in query.items())

    def __call__(self, action, email="ann@example.com", *, body=None, method="post", headers=None, **params):
        payload = body if body is not None else {"email": email}
        data = payload if isinstance(payload, str | bytes) else json.dumps(payload)
        return self.client.generic(
            method.upper(),
            self.url(action, **params),
            data=data,
            content_type="application/json",
            headers=headers or {},
        )


@pytest.fixture
def hook(client, access_key):
    return Hook(client, access_key)


def set_settings(**values):
    WebhookSettings.load()
    WebhookSettings.objects.update(**values)
    freshness.changed("webhook_settings")  # update() sends no signal


@pytest.fixture
def planning_settings(settings):
    """For tests of planned reads: no wait for a burst to settle, and no segment sizes reused from another test (the
    planner keeps them a minute)."""
    cache.clear()
    settings.WEBHOOK_PLAN_SETTLE_SECONDS = 0
    yield
    cache.clear()


def make_user(email="ann@example.com", **extra):
    """A site user (not staff) whose password is original-pw."""
    return User.objects.create_user(username=email, email=email, password="original-pw", **extra)


def app_calls(emulator):
    """The App API calls the emulator received, as (method, path)."""
    return [(r["method"], r["path"]) for r in emulator.requests("/v1/")]


def track_calls(emulator):
    """The Track API requests the emulator received."""
    return [r for r in emulator.requests("/api/")]


class JsonLog:
    """What LOG_FORMAT=json would write meanwhile: a handler built as the settings build the console's (the secret
    scrubber, then the request and delivery ids, then the JSON formatter) on the loggers the site configures."""

    LOGGERS = ("", "django", "django.server", "axes")

    def __init__(self):
        import io

        from webhooks.log_context import LogContextFilter
        from webhooks.log_json import JsonFormatter
        from webhooks.logging import RedactSecretsFilter

        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.addFilter(RedactSecretsFilter())
        self.handler.addFilter(LogContextFilter())
        self.handler.setFormatter(JsonFormatter())

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[dict]:
        return [json.loads(line) for line in self.text.splitlines()]


@pytest.fixture
def json_log():
    log = JsonLog()
    for name in JsonLog.LOGGERS:
        logging.getLogger(name).addHandler(log.handler)
    yield log
    for name in JsonLog.LOGGERS:
        logging.getLogger(name).removeHandler(log.handler)
