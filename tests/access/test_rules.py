"""Access rules (users.AccessRule) over HTTP: what each visitor gets, which pages no rule can lock, and what a
page costs in queries with and without a rule."""

from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from settings_app import freshness
from settings_app.models import WebhookSettings
from users.models import AccessRule, UserTag
from users.signals import tags_applied, tags_modified

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.access.urls")]


def redirect_target(response) -> tuple[str, str | None]:
    assert response.status_code == 302, response.status_code
    parts = urlsplit(response["Location"])
    return parts.path, parse_qs(parts.query).get("next", [None])[0]


def rule(path, *, any=(), all=(), none=(), apply=(), **fields):
    access_rule = AccessRule.objects.create(path=path, **fields)
    access_rule.tags_any.set(any)
    access_rule.tags_all.set(all)
    access_rule.tags_none.set(none)
    access_rule.apply_tags.set(apply)
    return access_rule


def test_an_exact_rule_allows_refuses_and_sends_anonymous_visitors_to_log_in(visit, tags):
    rule("/page/", any=[tags["VIP"]], message="Only for VIPs.\nJoin today.")
    anonymous = visit("/page/?lesson=2")
    assert redirect_target(anonymous) == ("/accounts/login/", "/page/?lesson=2")
    assert "private" in anonymous["Cache-Control"]
    allowed = visit("/page/", as_="vic")
    assert (allowed.status_code, allowed.content) == (200, b"ok")
    assert "private" in allowed["Cache-Control"]
    refused = visit("/page/", as_="bob")
    assert refused.status_code == 403
    assert "Only for VIPs.<br>Join today." in refused.content.decode()
    assert "private" in refused["Cache-Control"]
    assert visit("/page/", as_="staff").status_code == 200  # staff pass (the default)
    assert visit("/page/sub/", as_="bob").status_code == 200  # not a prefix rule
    assert visit("/plain/").status_code == 200


def test_staff_pass_off_treats_staff_like_anyone(visit, tags):
    rule("/page/", any=[tags["VIP"]], staff_pass=False)
    assert visit("/page/", as_="staff").status_code == 403


def test_a_prefix_rule_covers_everything_under_its_path(visit, tags):
    rule("/page/", prefix=True, all=[tags["VIP"], tags["Gold"]], redirect_url="/upgrade/")
    assert visit("/page/sub/", as_="ann").status_code == 200
    assert redirect_target(visit("/page/sub/?a=1", as_="vic")) == ("/upgrade/", "/page/sub/?a=1")
    assert redirect_target(visit("/page/", as_="bob")) == ("/upgrade/", "/page/")
    assert visit("/upgrade/", as_="bob").status_code == 200


def test_every_matching_rule_applies_and_the_most_specific_refusal_answers(visit, tags):
    rule("/", prefix=True, none=[tags["Payment failed"]], redirect_url="/locked/")
    rule("/page/", prefix=True, any=[tags["VIP"]], message="VIPs only.")
    rule("/page/sub/", any=[tags["Gold"]], message="Gold only.")
    refused = visit("/page/sub/", as_="bob")  # fails all three: the most specific answers
    assert refused.status_code == 403 and "Gold only." in refused.content.decode()
    refused = visit("/page/sub/", as_="vic")  # VIP, not Gold
    assert refused.status_code == 403 and "Gold only." in refused.content.decode()
    assert visit("/page/sub/", as_="ann").status_code == 200
    assert redirect_target(visit("/page/", as_="carl")) == ("/locked/", "/page/")  # VIP, but payment failed
    assert visit("/locked/", as_="carl").status_code == 200  # a rule never covers the page it sends people to
    assert redirect_target(visit("/plain/", as_="carl")) == ("/locked/", "/plain/")
    assert visit("/plain/", as_="bob").status_code == 200


def test_a_rule_on_the_root_locks_nobody_out_of_logging_in_the_admin_or_the_webhook(visit, client, tags, people):
    rule("/", prefix=True, any=[tags["VIP"]], redirect_url="/", staff_pass=False)
    assert redirect_target(visit("/plain/")) == ("/accounts/login/", "/plain/")
    assert visit("/accounts/login/?next=/plain/").status_code == 200
    assert visit("/accounts/password_reset/").status_code == 200
    assert visit("/admin/login/").status_code == 200
    client.force_login(people["bob"])
    followed = client.get("/plain/", follow=True)
    assert followed.redirect_chain == [("/?next=/plain/", 302)]
    assert followed.status_code == 200  # the rule does not cover its own redirect target: no loop
    key = WebhookSettings.load().access_key
    webhook = client.get(f"/?wpf_action=test&access_key={key}")
    assert (webhook.status_code, webhook.json()["status"]) == (200, "ok")
    posted = client.post(
        f"/webhooks/customerio?wpf_action=test&access_key={key}", {"email": "x@example.com"}, "application/json"
    )
    assert posted.status_code == 200, posted.content
    assert visit("/static/admin/css/base.css").status_code in (200, 404)  # never a login redirect
    assert visit("/healthz").status_code in (200, 404, 503)  # the health check (where installed): never a redirect


def test_redirects_between_locked_pages_end_in_a_403(visit, tags):
    rule("/a/", any=[tags["VIP"]], redirect_url="/b/")
    rule("/b/", any=[tags["Gold"]], redirect_url="/a/")
    assert visit("/a/", as_="bob").status_code == 403
    assert visit("/a/", as_="ann").status_code == 200


def test_a_disabled_rule_is_not_enforced(visit, tags):
    rule("/page/", any=[tags["VIP"]], enabled=False)
    assert visit("/page/", as_="bob").status_code == 200


def test_tags_of_a_rule_are_applied_once_when_an_allowed_user_visits(
    visit, tags, people, django_capture_on_commit_callbacks
):
    rule("/page/", apply=[tags["Gold"]])  # no tags required: any logged-in user
    received = []

    def receiver(sender, user, tags, **kwargs):
        received.append((user.username, sorted(str(t) for t in tags)))

    tags_applied.connect(receiver)
    tags_modified.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            assert redirect_target(visit("/page/"))[0] == "/accounts/login/"
            assert visit("/page/", as_="bob").status_code == 200
            assert visit("/page/", as_="bob").status_code == 200
    finally:
        tags_applied.disconnect(receiver)
        tags_modified.disconnect(receiver)
    assert UserTag.objects.filter(user=people["bob"], tag=tags["Gold"]).count() == 1
    assert received == [("bob", ["Gold"]), ("bob", ["Gold"])]  # applied, then modified: once


def test_a_page_no_rule_covers_runs_no_query(visit, client, tags, people, monkeypatch):
    rule("/page/", prefix=True, any=[tags["VIP"]])
    rule("/", none=[tags["Payment failed"]])
    client.force_login(people["ann"])
    assert client.get("/plain/").status_code == 200  # loads the rules into this process
    monkeypatch.setattr(freshness, "REVALIDATE_SECONDS", 3600.0)  # within the second that follows
    with CaptureQueriesContext(connection) as captured:
        assert client.get("/plain/").status_code == 200
    assert captured.captured_queries == []
    with CaptureQueriesContext(connection) as captured:
        assert client.get("/page/sub/").status_code == 200
    # The session, the user and the user's tags: the rules themselves come from the process's copy.
    assert len(captured.captured_queries) == 3
    assert "users_usertag" in captured.captured_queries[-1]["sql"]


def test_a_rule_saved_in_the_admin_applies_to_the_next_request(admin_client, visit, tags, people):
    assert visit("/page/", as_="bob").status_code == 200
    form = {
        "path": "/page/",
        "enabled": "on",
        "tags_any": [tags["VIP"].pk],
        "redirect_url": "",
        "message": "Members only.",
        "staff_pass": "on",
    }
    response = admin_client.post(reverse("admin:users_accessrule_add"), form)
    assert response.status_code == 302, response.content.decode()[:2000]
    refused = visit("/page/", as_="bob")
    assert refused.status_code == 403 and "Members only." in refused.content.decode()
    access_rule = AccessRule.objects.get()
    response = admin_client.post(
        reverse("admin:users_accessrule_change", args=[access_rule.pk]), {**form, "tags_any": [tags["Gold"].pk]}
    )
    assert response.status_code == 302
    assert visit("/page/", as_="vic").status_code == 403  # now Gold, which vic lacks
    assert visit("/page/", as_="ann").status_code == 200


def test_the_rule_list_in_the_admin_says_what_each_rule_needs(admin_client, tags):
    rule("/page/", prefix=True, any=[tags["VIP"]], none=[tags["Payment failed"]], redirect_url="/upgrade/")
    page = admin_client.get(reverse("admin:users_accessrule_changelist")).content.decode()
    assert "any of VIP; none of Payment failed" in page
    assert "redirect to /upgrade/" in page


def test_the_user_page_shows_tags_with_segment_and_type(admin_client, people, tags):
    page = admin_client.get(reverse("admin:users_user_change", args=[people["carl"].pk])).content.decode()
    assert "Payment failed" in page and "103" in page and "Data-driven" in page
    assert "VIP" in page and "101" in page and "Manual" in page
