import pytest
from django.urls import reverse

from users.models import Tag, User

pytestmark = pytest.mark.django_db


def test_the_customerio_part_comes_before_the_permission_widgets(admin_client):
    user = User.objects.create(username="ann", email="ann@example.com", cio_id="cio-ann")
    user.tags.add(Tag.objects.create(segment_id=7, name="VIP"))

    page = admin_client.get(reverse("admin:users_user_change", args=[user.pk])).text

    order = [
        ">Personal info</h2>",
        ">Customer.io</h2>",
        'name="role"',
        '<div class="readonly">VIP</div>',  # the user's tags
        'name="cio_id"',
        'name="meta"',
        ">Permissions</h2>",
        'name="is_superuser"',
        'name="user_permissions"',
    ]
    positions = [page.index(marker) for marker in order]
    assert positions == sorted(positions)
