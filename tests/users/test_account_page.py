"""The account page a login without ?next= lands on: the person's profile, their tags, the password change."""

import pytest

from users.models import AccessRule, Role, Tag, User, UserTag

pytestmark = pytest.mark.django_db


@pytest.fixture
def ann():
    ann = User.objects.create_user("ann", "ann@example.com", "a-pass-42", first_name="Ann", last_name="Smith")
    ann.role = Role.objects.create(slug="customer", name="Customer")
    ann.save()
    vip = Tag.objects.create(segment_id=1, name="VIP")
    newsletter = Tag.objects.create(segment_id=2, name="Newsletter")
    UserTag.objects.bulk_create([UserTag(user=ann, tag=vip), UserTag(user=ann, tag=newsletter)])
    Tag.objects.create(segment_id=3, name="Trial")  # not hers
    return ann


def log_in(client, username, password):
    # Through the login form: the redirect after it is what is under test (and django-axes wants a real request).
    return client.post("/accounts/login/", {"username": username, "password": password})


def test_a_login_without_next_lands_on_the_account_page(client, ann):
    logged_in = log_in(client, "ann", "a-pass-42")
    assert (logged_in.status_code, logged_in["Location"]) == (302, "/accounts/profile/")

    page = client.get(logged_in["Location"])
    assert page.status_code == 200
    assert "private" in page["Cache-Control"]
    text = page.content.decode()
    for shown in ("ann@example.com", "Ann Smith", "Customer", "<li>Newsletter</li>", "<li>VIP</li>"):
        assert shown in text
    assert text.index("<li>Newsletter</li>") < text.index("<li>VIP</li>")
    assert "Trial" not in text
    assert '<a href="/accounts/password_change/">Change your password</a>' in text
    assert client.get("/accounts/password_change/").status_code == 200


def test_a_login_with_next_still_goes_there(client, ann):
    assert log_in(client, "ann", "a-pass-42")["Location"] == "/accounts/profile/"
    client.logout()
    answer = client.post("/accounts/login/?next=/vip/", {"username": "ann", "password": "a-pass-42"})
    assert answer["Location"] == "/vip/"


def test_anonymous_visitors_are_sent_to_log_in(client):
    assert client.get("/accounts/profile/")["Location"] == "/accounts/login/?next=/accounts/profile/"


def test_staff_see_the_same_page(client, admin_user):
    assert log_in(client, "admin", "password")["Location"] == "/accounts/profile/"
    text = client.get("/accounts/profile/").content.decode()
    assert "admin@example.com" in text
    assert "You have no tags yet." in text


def test_no_access_rule_locks_anyone_out_of_their_account(client, ann):
    lockout = AccessRule.objects.create(path="/", prefix=True, staff_pass=False)
    lockout.tags_any.set([Tag.objects.get(name="Trial")])
    client.force_login(ann)
    assert client.get("/vip/").status_code == 403  # the rule does cover the rest of the site (the demo page)
    assert client.get("/accounts/profile/").status_code == 200
    assert client.get("/accounts/password_change/").status_code == 200
