"""Broadcasts for the queue's tests: many people in a few segments, the users they are on the site, and what the
processing asked Customer.io for."""

from collections import Counter

from users.models import Role, User
from webhooks.models import WebhookDelivery
from webhooks.queue import drain

SEGMENTS = [
    {"id": 1, "name": "VIP", "type": "manual"},
    {"id": 2, "name": "Newsletter", "type": "manual"},
    {"id": 3, "name": "Active customers", "type": "dynamic"},
]


def people(count, segments_of=lambda n: [1 + n % 3]):
    return [{"email": f"p{n}@example.com", "id": f"p{n}", "segments": segments_of(n)} for n in range(count)]


def make_users(count):
    role = Role.get_default()
    User.objects.bulk_create(
        [
            User(username=f"p{n}", email=f"p{n}@example.com", email_normalized=f"p{n}@example.com", role=role)
            for n in range(count)
        ]
    )


def calls(emulator):
    """App API calls by kind."""
    kinds = Counter()
    for entry in emulator.requests("/v1/"):
        path = entry["path"]
        if path.endswith("/membership"):
            kinds["membership"] += 1
        elif path.endswith("/customer_count"):
            kinds["count"] += 1
        elif path == "/v1/segments":
            kinds["list"] += 1
        elif path.endswith("/segments"):
            kinds["per_contact"] += 1
        elif path == "/v1/customers/attributes":
            kinds["attributes_batch"] += 1
        else:
            kinds[path] += 1
    return kinds


def process_all():
    """What a worker does, in this process: each waiting delivery's task, oldest first."""
    for delivery_id in WebhookDelivery.objects.filter(status="queued").order_by("pk").values_list("pk", flat=True):
        drain.process(delivery_id)


def tag_names(email):
    return sorted(User.objects.get(email=email).tags.values_list("name", flat=True))
