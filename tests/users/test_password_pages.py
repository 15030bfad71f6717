"""The login page's "Forgot password?" link and the reset pages behind it."""

import re

import pytest
from django.core import mail

from users.models import User

pytestmark = pytest.mark.django_db


def test_the_login_page_links_to_the_password_reset(client):
    page = client.get("/accounts/login/")

    assert page.status_code == 200
    assert '<a href="/accounts/password_reset/">Forgot password?</a>' in page.text
    assert client.get("/accounts/password_reset/").status_code == 200


def test_a_person_created_without_a_password_sets_one_through_the_link(client):
    user = User.objects.create(username="ann", email="ann@example.com")
    user.set_unusable_password()
    user.save()

    asked = client.post("/accounts/password_reset/", {"email": "ANN@example.com"})

    assert asked.status_code == 302
    assert client.get(asked["Location"]).status_code == 200  # "check your email"
    [message] = mail.outbox
    assert message.to == ["ann@example.com"]
    link = re.search(r"http://testserver(/accounts/reset/\S+/)", message.body).group(1)
    form_page = client.get(link, follow=True)
    assert form_page.status_code == 200
    assert 'name="new_password1"' in form_page.text
    done = client.post(
        form_page.redirect_chain[-1][0], {"new_password1": "a-Fresh-pass-42", "new_password2": "a-Fresh-pass-42"}
    )
    assert done.status_code == 302
    assert client.get(done["Location"]).status_code == 200  # "your password has been set"
    user.refresh_from_db()
    assert user.check_password("a-Fresh-pass-42")


@pytest.mark.parametrize("email", ["nobody@example.com", "gone@example.com"])
def test_no_email_for_unknown_or_inactive_people_and_the_same_answer(client, email):
    User.objects.create(username="gone", email="gone@example.com", is_active=False)

    asked = client.post("/accounts/password_reset/", {"email": email})

    assert asked.status_code == 302
    assert asked["Location"] == "/accounts/password_reset/done/"
    assert mail.outbox == []


def test_the_reset_finds_people_by_the_sites_email_rule(client):
    """The account the webhooks and the admin would find (NFC, lowercased): nothing looser, nothing stricter."""
    import unicodedata

    jose = User.objects.create(username="jose", email=unicodedata.normalize("NFC", "josé@example.com"))
    User.objects.create(username="strasse", email="strasse@example.com")

    client.post("/accounts/password_reset/", {"email": unicodedata.normalize("NFD", "JOSÉ@example.com")})
    assert [message.to for message in mail.outbox] == [[jose.email]]

    mail.outbox.clear()
    # "ß" folds to "ss" under casefold(): another address, another person.
    client.post("/accounts/password_reset/", {"email": "straße@example.com"})
    assert mail.outbox == []
