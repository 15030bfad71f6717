import pytest
from playwright.sync_api import expect

from users.models import Role, Tag, UserTag

from .screenshots import down_to

pytestmark = pytest.mark.browser


def test_the_customerio_fields_come_before_the_permission_widgets(admin_page, django_user_model, screenshot):
    person = django_user_model.objects.create_user(
        username="ann@example.com", email="ann@example.com", password="x", first_name="Ann", last_name="Smith"
    )
    person.role = Role.objects.get(is_default=True)
    person.cio_id = "a1b2c3"
    person.set_unusable_password()  # as a webhook leaves a new person; the tests' fast hasher is not worth a picture
    person.save()
    for segment_id, name, kind in [(1, "VIP", Tag.Kind.MANUAL), (2, "Newsletter", Tag.Kind.DATA_DRIVEN)]:
        UserTag.objects.create(user=person, tag=Tag.objects.create(segment_id=segment_id, name=name, kind=kind))

    admin_page.goto(f"/admin/users/user/{person.pk}/change/")
    role = admin_page.get_by_role("combobox", name="Role")
    expect(role).to_be_visible()
    superuser = admin_page.get_by_role("checkbox", name="Superuser status")
    groups = admin_page.get_by_role("heading", name="Permissions", exact=True)
    # Read top to bottom as a site admin does: role, tags and Customer.io id first, then Django's permissions.
    assert role.bounding_box()["y"] < groups.bounding_box()["y"] < superuser.bounding_box()["y"]
    assert admin_page.get_by_role("textbox", name="Customer.io id").bounding_box()["y"] < groups.bounding_box()["y"]

    customerio = admin_page.get_by_role("group", name="Customer.io", exact=True)
    expect(customerio).to_contain_text("Newsletter, VIP")
    # From the top of the page to the Customer.io fields: Django's permission widgets below are left out.
    screenshot(admin_page, "admin-user", full_page=True, clip=down_to(customerio))
