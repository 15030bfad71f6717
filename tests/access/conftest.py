import pytest

from users.models import Tag, User, UserTag


@pytest.fixture
def tags(db):
    return {
        "VIP": Tag.objects.create(segment_id=101, name="VIP", kind=Tag.Kind.MANUAL),
        "Gold": Tag.objects.create(segment_id=102, name="Gold", kind=Tag.Kind.MANUAL),
        "Payment failed": Tag.objects.create(segment_id=103, name="Payment failed", kind=Tag.Kind.DATA_DRIVEN),
        "Active customers": Tag.objects.create(segment_id=104, name="Active customers", kind=Tag.Kind.DATA_DRIVEN),
    }


def make_user(name, tags=(), **extra):
    user = User.objects.create_user(username=name, email=f"{name}@example.com", password="x", **extra)
    UserTag.objects.bulk_create([UserTag(user=user, tag=tag) for tag in tags])
    return user


@pytest.fixture
def people(tags):
    """ann: VIP and Gold; vic: VIP; bob: no tags; carl: VIP but Payment failed; staff: staff, no tags."""
    return {
        "ann": make_user("ann", [tags["VIP"], tags["Gold"]]),
        "vic": make_user("vic", [tags["VIP"]]),
        "bob": make_user("bob"),
        "carl": make_user("carl", [tags["VIP"], tags["Payment failed"]]),
        "staff": make_user("staff", is_staff=True),
    }


@pytest.fixture
def visit(client, people):
    """visit(path, as_=name or None) → the response, following nothing."""

    def get(path, as_=None, **kwargs):
        client.logout()
        if as_:
            client.force_login(people[as_])
        return client.get(path, **kwargs)

    return get
