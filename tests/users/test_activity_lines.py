"""log_activities writes its lines without model instances, and skips redact()'s walk for a context whose text holds
nothing it could change: what it stores must be what redact() and the JSONField would have stored."""

import json

import pytest

from settings_app.redaction import redact
from users.models import ActivityLog, User
from users.services.activity import Activity, _redacted_json, lines_for_delivery, log_activities

CONTEXTS = [
    {},
    {"applied": ["Everyone", "Gold plan"], "removed": []},
    {"applied": ["Passengers"], "removed": ["API users"]},  # tag names that look like secrets' names
    {"user_pass": "hunter2", "plan": "gold"},
    {"nested": {"access_key": "abc", "list": [{"token": "t"}]}},
    {"link": "https://example.com/accounts/reset/MQ/abc-123/"},
    {"link": "https://example.com/accounts/login-link/abcdef/"},
    {"dsn": "postgres://site:S3cret@db/site"},
    {"header": "Bearer abc.def"},
    {"name": "Zoë", "pa\u017fsword": "x"},  # the long s folds to "s": a secret's name only case-insensitively
    {"number": 3, "none": None, "flag": True, "ratio": 0.5},
]


@pytest.mark.parametrize("context", CONTEXTS)
def test_the_stored_context_is_the_redacted_one(context):
    assert json.loads(_redacted_json(context)) == redact(context)


@pytest.mark.django_db
def test_lines_are_stored_as_the_model_would_store_them():
    user = User.objects.create(username="ann", email="ann@example.com")
    with lines_for_delivery(41):
        written = log_activities(
            ActivityLog.Source.BACKFILL,
            [
                Activity("Tags for ann: added Gold", user=user, context={"applied": ["Gold"]}),
                Activity("Secret access_key=abc in a message", level=ActivityLog.Level.WARNING, user_id=user.pk),
                Activity("About another delivery", delivery_id=7, context={"user_pass": "x"}),
            ],
        )

    assert written == 3
    lines = list(ActivityLog.objects.order_by("pk"))
    assert [(line.source, line.level, line.user_id, line.delivery_id) for line in lines] == [
        ("backfill", "info", user.pk, 41),
        ("backfill", "warning", user.pk, 41),
        ("backfill", "info", None, 7),
    ]
    assert lines[0].context == {"applied": ["Gold"]}
    assert lines[1].message == "Secret access_key=******** in a message"
    assert lines[2].context == {"user_pass": "********"}
    assert all(line.created_at is not None for line in lines)
    assert ActivityLog.objects.filter(source=ActivityLog.Source.BACKFILL, level="warning").count() == 1
