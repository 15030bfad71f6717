import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser


def test_the_customerio_fields_come_before_the_permission_widgets(admin_page, django_user_model):
    person = django_user_model.objects.create_user(username="ann", email="ann@example.com", password="x")

    admin_page.goto(f"/admin/users/user/{person.pk}/change/")
    role = admin_page.get_by_role("combobox", name="Role")
    expect(role).to_be_visible()
    superuser = admin_page.get_by_role("checkbox", name="Superuser status")
    groups = admin_page.get_by_role("heading", name="Permissions", exact=True)
    # Read top to bottom as a site admin does: role, tags and Customer.io id first, then Django's permissions.
    assert role.bounding_box()["y"] < groups.bounding_box()["y"] < superuser.bounding_box()["y"]
    assert admin_page.get_by_role("textbox", name="Customer.io id").bounding_box()["y"] < groups.bounding_box()["y"]
