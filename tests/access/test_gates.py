"""The developer API over HTTP: the decorator, the mixin, the DRF permission and the template tags allow, refuse
and redirect as docs/tags.md says, for anonymous visitors, users with and without the tags, and staff."""

from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from settings_app import freshness
from users.access import AmbiguousTagName, has_tag, has_tags
from users.models import Tag

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.access.urls")]


def assert_private(response):
    assert "private" in response["Cache-Control"]


def redirect_target(response) -> tuple[str, str | None]:
    """(path, next) of a redirect."""
    assert response.status_code == 302
    parts = urlsplit(response["Location"])
    return parts.path, parse_qs(parts.query).get("next", [None])[0]


def assert_login_redirect(response, next_path):
    assert redirect_target(response) == ("/accounts/login/", next_path)


@pytest.mark.parametrize("path", ["/gated/any/", "/gated/all/", "/gated/none/", "/gated/staff/", "/mixin/"])
def test_anonymous_visitors_go_to_the_login_page_with_next(visit, path):
    response = visit(path)
    assert_login_redirect(response, path)
    assert_private(response)


def test_next_keeps_the_query_string(visit):
    assert_login_redirect(visit("/gated/any/?lesson=3&x=y"), "/gated/any/?lesson=3&x=y")


@pytest.mark.parametrize(
    ("path", "who", "status"),
    [
        ("/gated/any/", "ann", 200),
        ("/gated/any/", "vic", 200),
        ("/gated/any/", "bob", 403),
        ("/gated/all/", "ann", 200),  # "vip" (a name in other case) and 102 (a segment id)
        ("/gated/all/", "vic", 403),
        ("/gated/none/", "bob", 200),
        ("/gated/none/", "carl", 403),
        ("/gated/any/", "staff", 403),  # staff pass only where the view says so
        ("/gated/staff/", "staff", 200),
        ("/gated/staff/", "bob", 403),
        ("/mixin/", "vic", 200),
        ("/mixin/", "carl", 403),
        ("/mixin/", "bob", 403),
        ("/mixin/", "staff", 403),
    ],
)
def test_views_allow_and_refuse_by_tags(visit, path, who, status):
    response = visit(path, as_=who)
    assert response.status_code == status
    assert_private(response)
    if status == 200:
        assert response.content.decode() in ("ok", "mixin ok")
    else:
        assert "You do not have access to this page." in response.content.decode()


def test_a_refused_user_is_redirected_with_next_when_the_view_says_where(visit):
    response = visit("/gated/redirect/?x=1", as_="bob")
    assert redirect_target(response) == ("/upgrade/", "/gated/redirect/?x=1")
    assert visit("/gated/redirect/", as_="vic").status_code == 200
    response = visit("/mixin/redirect/", as_="vic")
    assert redirect_target(response) == ("/upgrade/", "/mixin/redirect/")
    assert visit("/mixin/redirect/", as_="ann").status_code == 200


def test_a_view_that_redirects_to_itself_shows_the_403_page_instead_of_looping(visit):
    assert visit("/gated/self-redirect/", as_="bob").status_code == 403


def test_drf_permission_answers_401_and_403_never_a_redirect(visit):
    anonymous = visit("/api/vip/")
    assert anonymous.status_code == 401
    assert "Location" not in anonymous
    assert anonymous.json()["detail"]
    refused = visit("/api/vip/", as_="bob")
    assert refused.status_code == 403
    assert "Location" not in refused
    assert visit("/api/vip/", as_="carl").status_code == 403
    allowed = visit("/api/vip/", as_="vic")
    assert (allowed.status_code, allowed.json()) == (200, {"secret": "for VIPs"})
    assert_private(allowed)
    assert visit("/api/gold/", as_="ann").status_code == 200  # HasTags reading the view's tags_all
    assert visit("/api/gold/", as_="vic").status_code == 403
    assert visit("/api/gold/").status_code == 401


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        (None, "[filter:no][any:out][all:not both][tag:][method:none][var:no var][not:locked]"),
        ("ann", "[filter:yes][any:in][all:both][tag:gold][method:one][var:no var][not:paid up]"),
        ("vic", "[filter:yes][any:in][all:not both][tag:][method:one][var:no var][not:paid up]"),
        ("bob", "[filter:no][any:out][all:not both][tag:][method:none][var:no var][not:paid up]"),
        ("carl", "[filter:yes][any:out][all:not both][tag:][method:one][var:var][not:locked]"),
    ],
)
def test_template_filter_and_block_tag(visit, who, expected):
    response = visit("/template/", as_=who)
    assert response.content.decode() == expected


def test_a_name_two_tags_share_is_an_error_naming_both(visit, people):
    Tag.objects.create(segment_id=201, name="Dup")
    Tag.objects.create(segment_id=202, name="DUP")
    with pytest.raises(AmbiguousTagName) as raised:
        has_tag(people["ann"], "dup")
    assert '"Dup" (segment 201)' in str(raised.value)
    assert '"DUP" (segment 202)' in str(raised.value)
    with pytest.raises(AmbiguousTagName):
        visit("/gated/ambiguous/", as_="ann")
    assert has_tag(people["ann"], 201) is False  # by segment id it is clear


def test_tags_are_named_by_tag_segment_id_or_name_in_any_case(people, tags):
    ann = people["ann"]
    assert has_tag(ann, tags["VIP"]) and has_tag(ann, 101) and has_tag(ann, "vIp") and ann.has_tag(" VIP ")
    assert not has_tag(ann, "Payment failed") and not has_tag(ann, 103)
    assert not has_tag(ann, "No such tag") and not has_tag(ann, 999)
    assert has_tags(ann, any=["No such tag", "Gold"])
    assert not has_tags(ann, all=["VIP", "No such tag"])
    assert has_tags(ann, none=["No such tag"])
    with pytest.raises(TypeError):
        has_tag(ann, 1.5)


def test_a_tag_created_elsewhere_a_moment_ago_is_found_by_name(people, monkeypatch):
    assert has_tag(people["ann"], "VIP")  # the index of names is loaded
    monkeypatch.setattr(freshness, "REVALIDATE_SECONDS", 3600.0)
    fresh = Tag.objects.bulk_create([Tag(segment_id=300, name="Fresh")])[0]  # no signal: the index lags
    people["ann"].user_tags.create(tag=fresh)
    user = type(people["ann"]).objects.get(pk=people["ann"].pk)
    assert has_tag(user, "fresh")


def test_the_users_tags_are_read_once_per_request(visit, people, monkeypatch):
    visit("/many-checks/", as_="ann")  # warms the per-process index of tag names
    monkeypatch.setattr(freshness, "REVALIDATE_SECONDS", 3600.0)
    with CaptureQueriesContext(connection) as captured:
        response = visit("/many-checks/", as_="ann")
    assert response.content.decode() == "100"
    tag_reads = [q["sql"] for q in captured.captured_queries if "users_usertag" in q["sql"]]
    assert len(tag_reads) == 1
    assert not [q["sql"] for q in captured.captured_queries if 'FROM "users_tag"' in q["sql"]]


def test_a_new_tag_sharing_a_name_is_ambiguous_before_the_index_reloads(people, monkeypatch):
    assert has_tag(people["ann"], "VIP")  # the index of names is loaded
    monkeypatch.setattr(freshness, "REVALIDATE_SECONDS", 3600.0)
    twin = Tag.objects.bulk_create([Tag(segment_id=301, name="vip")])[0]  # a new segment, no signal
    people["ann"].user_tags.create(tag=twin)
    user = type(people["ann"]).objects.get(pk=people["ann"].pk)
    with pytest.raises(AmbiguousTagName) as raised:
        has_tag(user, "VIP")
    assert "(segment 101)" in str(raised.value) and "(segment 301)" in str(raised.value)
