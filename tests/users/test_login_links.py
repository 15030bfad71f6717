"""Login links (users.services.login_links and the /accounts/login-link/<token>/ page): a link logs its person in
once, through a POST the page's form makes (a GET never logs in), lands on the account page or a safe ?next=, and
is refused — with the same words whoever it was for — once used, expired, outdated by a new password or email, or
for staff and superusers."""

import re
from urllib.parse import urlsplit

import pytest
from django.contrib.auth import SESSION_KEY
from django.test import Client

from settings_app import freshness
from settings_app.models import WebhookSettings
from users.models import User
from users.services import login_links
from users.services.login_links import LoginLinkRefused, login_url, make_token, user_for_token
from users.views import LOGIN_LINK_REFUSED

pytestmark = pytest.mark.django_db

BASE = "https://members.example.com"


@pytest.fixture(autouse=True)
def site_base_url(settings):
    settings.SITE_BASE_URL = BASE


@pytest.fixture
def ann():
    user = User.objects.create(username="ann", email="ann@example.com")
    user.set_unusable_password()  # as a webhook leaves a new person with Return a login link and no password
    user.save()
    return user


def link_path(user) -> str:
    url = login_url(user)
    assert url.startswith(f"{BASE}/accounts/login-link/")
    return urlsplit(url).path


def csrf_client() -> Client:
    return Client(enforce_csrf_checks=True)  # as a browser: the form's CSRF token is checked


def open_link(client: Client, path: str, **query):
    """What a browser does with the link: GET the page, then submit its form (the page's script does it)."""
    page = client.get(path, query)
    if page.status_code != 200:
        return page
    form = re.search(r'<form id="login-link-form" method="post" action="([^"]+)">', page.text)
    assert form, page.text
    data = {"csrfmiddlewaretoken": re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)}
    hidden_next = re.search(r'name="next" value="([^"]+)"', page.text)
    if hidden_next:
        data["next"] = hidden_next.group(1).replace("&amp;", "&")
    return client.post(form.group(1), data)


def logged_in_as(client: Client):
    return client.session.get(SESSION_KEY)


def set_lifetime(hours: int):
    WebhookSettings.load()
    WebhookSettings.objects.update(login_link_lifetime_hours=hours)
    freshness.changed("webhook_settings")  # update() sends no signal


def refused_to_login_page(response, client, location="/accounts/login/"):
    assert response.status_code == 302
    assert response["Location"] == location
    assert response["Referrer-Policy"] == "no-referrer"
    shown = client.get(response["Location"])
    assert LOGIN_LINK_REFUSED in shown.text
    assert logged_in_as(client) is None
    return shown


# Once, through the form's POST ---------------------------------------------------------------------------------------


def test_a_link_logs_its_person_in_once_and_lands_on_the_account_page(ann):
    path = link_path(ann)
    browser = csrf_client()

    page = browser.get(path)
    assert page.status_code == 200
    assert logged_in_as(browser) is None  # the page alone logs nobody in
    assert "no-store" in page["Cache-Control"]
    assert page["Referrer-Policy"] == "strict-origin"  # the form's POST needs its Origin; no path is ever sent
    assert '<button type="submit">Log in</button>' in page.text  # without JavaScript
    assert 'document.getElementById("login-link-form").submit()' in page.text

    done = open_link(browser, path)
    assert done.status_code == 302 and done["Location"] == "/accounts/profile/"
    assert done["Referrer-Policy"] == "no-referrer" and "no-store" in done["Cache-Control"]
    assert logged_in_as(browser) == str(ann.pk)
    ann.refresh_from_db()
    assert ann.last_login is not None  # user_logged_in was sent: that is what uses the link up
    account = browser.get(done["Location"])
    assert account.status_code == 200 and "ann@example.com" in account.text

    # The person opens it again from the email, still logged in: they simply land where it would take them.
    again = browser.get(path)
    assert again.status_code == 302 and again["Location"] == "/accounts/profile/"

    # Anyone else (or the person in another browser): the login page and its message.
    elsewhere = csrf_client()
    refused_to_login_page(open_link(elsewhere, path), elsewhere)
    assert user_for_token(path.split("/")[-2]) is None


def test_a_get_never_logs_in_and_the_post_does(ann):
    """Mail scanners fetch links with GET (and HEAD): the link must still work when the person opens it."""
    path = link_path(ann)
    scanner = Client()
    for _ in range(3):
        assert scanner.get(path).status_code == 200
        assert scanner.head(path).status_code == 200
    ann.refresh_from_db()
    assert ann.last_login is None and logged_in_as(scanner) is None

    person = Client()
    assert person.post(path).status_code == 302
    assert logged_in_as(person) == str(ann.pk)


def test_the_post_needs_the_pages_csrf_token(ann):
    """No other site can make a browser log in to an account that is not the visitor's (login CSRF)."""
    path = link_path(ann)
    browser = csrf_client()
    assert browser.post(path).status_code == 403
    assert logged_in_as(browser) is None
    assert user_for_token(path.split("/")[-2]) == ann  # still good for its person


def test_the_login_goes_through_django_axes_and_its_access_log_has_no_token(ann):
    from axes.models import AccessLog

    path = link_path(ann)
    assert open_link(csrf_client(), path).status_code == 302
    [entry] = AccessLog.objects.all()
    assert entry.username == "ann" and entry.path_info == "/accounts/login-link/********/"


# Refusals ------------------------------------------------------------------------------------------------------------


def test_a_link_expires_after_the_lifetime_read_when_it_is_opened(ann, monkeypatch):
    issued = login_links.current_time()
    token = make_token(ann, issued)
    path = f"/accounts/login-link/{token}/"

    monkeypatch.setattr(login_links, "current_time", lambda: issued + 72 * 3600)
    assert user_for_token(token) == ann  # the default lifetime, to the second
    monkeypatch.setattr(login_links, "current_time", lambda: issued + 72 * 3600 + 1)
    assert login_links.check_token(token).reason == "expired"
    browser = csrf_client()
    refused_to_login_page(open_link(browser, path), browser)

    # A shorter lifetime set in the admin applies to links already sent.
    set_lifetime(1)
    monkeypatch.setattr(login_links, "current_time", lambda: issued + 3601)
    assert user_for_token(token) is None
    monkeypatch.setattr(login_links, "current_time", lambda: issued + 3599)
    assert user_for_token(token) == ann
    # Issued (by the clock) far in the future: no link this site made.
    monkeypatch.setattr(login_links, "current_time", lambda: issued - 3600)
    assert user_for_token(token) is None


@pytest.mark.parametrize("change", ["password", "unusable password", "email", "deactivated"])
def test_a_link_dies_when_the_password_or_email_changes(ann, change):
    path = link_path(ann)
    if change == "password":
        ann.set_password("chosen-by-them-42")
    elif change == "unusable password":
        ann.set_unusable_password()  # a new random unusable hash: any "password change" counts
    elif change == "email":
        ann.email = "ann.new@example.com"
    else:
        ann.is_active = False
    ann.save()

    browser = csrf_client()
    refused_to_login_page(open_link(browser, path), browser)


@pytest.mark.parametrize("flag", ["is_staff", "is_superuser"])
def test_no_link_for_staff_or_superusers_nor_once_they_become_one(ann, flag):
    path = link_path(ann)  # made while ann was a plain member
    setattr(ann, flag, True)
    ann.save()

    with pytest.raises(LoginLinkRefused, match="staff or superuser"):
        login_url(ann)
    assert login_links.check_token(path.split("/")[-2]).reason == "staff or superuser"
    for method in ("get", "post"):
        browser = Client()
        refused_to_login_page(getattr(browser, method)(path), browser)


def test_no_link_for_inactive_or_unsaved_users_nor_without_site_base_url(ann, settings):
    with pytest.raises(LoginLinkRefused, match="inactive"):
        login_url(User(username="gone", email="gone@example.com", is_active=False, pk=99))
    with pytest.raises(LoginLinkRefused, match="not saved"):
        login_url(User(username="new", email="new@example.com"))
    settings.SITE_BASE_URL = ""
    with pytest.raises(LoginLinkRefused, match="SITE_BASE_URL") as refused:
        login_url(ann)
    assert isinstance(refused.value, ValueError)


@pytest.mark.parametrize(
    "token",
    [
        "nonsense",
        "a-b",
        "1-2-3-4",
        "zzzzzzzzzzzzzzzz-1-abc",  # an id too large for base 36's limit
        "x" * 200,
        "9999-1-" + "0" * 32,  # nobody
    ],
)
def test_malformed_forged_and_unknown_links_get_the_same_answer(ann, token):
    browser = Client()
    shown = refused_to_login_page(browser.get(f"/accounts/login-link/{token}/"), browser)
    assert "ann" not in shown.text
    refused_to_login_page(browser.post(f"/accounts/login-link/{token}/"), browser)


def test_a_forged_digest_for_a_real_person_is_refused(ann):
    token = make_token(ann)
    forged = token[:-1] + ("0" if token[-1] != "0" else "1")
    assert user_for_token(forged) is None
    browser = Client()
    shown = refused_to_login_page(browser.post(f"/accounts/login-link/{forged}/"), browser)
    assert "ann" not in shown.text


def test_the_token_holds_no_email_and_no_password_hash(ann):
    ann.set_password("chosen-by-them-42")
    ann.save()
    token = make_token(ann)
    user_part, issued_part, digest = token.split("-")
    assert int(user_part, 36) == ann.pk and len(digest) == 32
    for secret in (ann.email, ann.password, ann.password.split("$")[-1]):
        assert secret not in token


def test_links_made_before_a_secret_key_rotation_keep_working(ann, settings):
    token = make_token(ann)
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-new-secret-key-for-the-site-" + "x" * 20
    assert user_for_token(token) == ann
    settings.SECRET_KEY_FALLBACKS = []
    assert user_for_token(token) is None


# ?next= ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("next_url", "lands_on"),
    [
        ("/members/course/?part=2", "/members/course/?part=2"),
        ("https://evil.example.com/", "/accounts/profile/"),
        ("//evil.example.com/", "/accounts/profile/"),
        ("javascript:alert(1)", "/accounts/profile/"),
        ("https://testserver/members/", "https://testserver/members/"),
    ],
)
def test_next_is_honoured_only_when_it_stays_on_the_site(ann, next_url, lands_on):
    done = open_link(csrf_client(), link_path(ann), next=next_url)
    assert done.status_code == 302 and done["Location"] == lands_on


def test_a_refused_link_keeps_a_safe_next_for_the_login_page(ann):
    browser = Client()
    answer = browser.get("/accounts/login-link/nonsense/", {"next": "/members/"})
    refused_to_login_page(answer, browser, location="/accounts/login/?next=/members/")
    answer = browser.get("/accounts/login-link/nonsense/", {"next": "https://evil.example.com/"})
    refused_to_login_page(answer, browser)


def test_an_access_rule_on_the_root_never_covers_the_link(ann):
    """A site locked to members with a tag still lets a person in through their link (to the account page, which
    no rule covers either)."""
    from users.models import AccessRule, Tag

    members_only = AccessRule.objects.create(path="/", prefix=True)
    members_only.tags_any.set([Tag.objects.create(segment_id=1, name="Members")])
    browser = csrf_client()
    assert browser.get("/members/").status_code == 302  # the rule is in force

    done = open_link(browser, link_path(ann))
    assert done.status_code == 302 and done["Location"] == "/accounts/profile/"
    assert logged_in_as(browser) == str(ann.pk)


def test_two_posts_of_one_link_at_once_log_in_once(ann):
    """Both requests verify the link before either logs in (a double click, a scanner that submits forms): only
    the first to use it up logs in."""
    token = make_token(ann)
    first, second = login_links.check_token(token), login_links.check_token(token)
    assert first.user == ann and second.user == ann
    assert login_links.use_up(first.user) is True
    assert login_links.use_up(second.user) is False
    assert user_for_token(token) is None
