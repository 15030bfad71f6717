"""Access rules (users.AccessRule) as site admins write them in the admin, enforced by AccessRuleMiddleware.

The rules are held per process and reloaded within a second of a change in any process (settings_app.freshness):
a request for a path that no rule covers reads nothing from the database and does not even load the user. For a
covered path every rule that matches applies, the most specific first (the longest path; an exact rule before a
prefix rule of the same path), and the first one that refuses decides what the visitor gets.

Some pages can never be locked, so that no rule (not even one on "/") locks anyone out of the site or into a loop:
the admin, the login, logout, password-reset and password-change pages, static files, and views marked with
`never_locked` (the Customer.io webhook, /healthz, the account page a login lands on).
"""

import logging
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.db.models.signals import m2m_changed
from django.urls import Resolver404, ResolverMatch, resolve

from cio.errors import CustomerIOError
from settings_app import freshness

from ..models import AccessRule, Tag
from ..services.segment_changes import NotAManualSegment
from .checks import is_authenticated, user_tags
from .gates import GATED_FLAG, mark_private, refuse

logger = logging.getLogger(__name__)

RULES_KIND = "access_rules"
# Django's own pages a rule must never cover: the admin (by namespace) and the authentication views.
NEVER_LOCKED_NAMESPACES = {"admin"}
NEVER_LOCKED_URL_NAMES = {
    "login",
    "logout",
    "password_reset",
    "password_reset_done",
    "password_reset_confirm",
    "password_reset_complete",
    # Linked from the account page (users.views.account, marked never_locked): a rule on "/" must not keep anyone
    # from changing their own password.
    "password_change",
    "password_change_done",
    "healthz",
}


def never_locked(view=None, *, when=None):
    """Mark a view that access rules must never cover; `when(request)` narrows it to some requests (the site root
    is the webhook only when its query string says so)."""

    def mark(view):
        view.never_locked = when or True
        return view

    return mark(view) if view is not None else mark


@dataclass(frozen=True)
class Rule:
    pk: int
    path: str
    prefix: bool
    any: frozenset[int]
    all: frozenset[int]
    none: frozenset[int]
    redirect_url: str
    message: str
    staff_pass: bool
    apply: tuple[int, ...]
    # The page refused visitors are sent to, when it is on this site: the rule never covers it (a lockout rule on
    # "/" that redirects to /locked/ must let people see /locked/).
    redirect_path: str | None

    def covers(self, path: str) -> bool:
        return path.startswith(self.path) if self.prefix else path == self.path

    def allows(self, user, held: dict) -> bool:
        if self.staff_pass and user.is_staff:
            return True
        if self.any and not (self.any & held.keys()):
            return False
        return self.all <= held.keys() and not (self.none & held.keys())


class RuleSet:
    def __init__(self, rules: list[Rule]):
        self.exact = {rule.path: rule for rule in rules if not rule.prefix}
        # Longest first, so the first match is the most specific.
        self.prefixes = sorted((rule for rule in rules if rule.prefix), key=lambda rule: -len(rule.path))

    def __bool__(self):
        return bool(self.exact or self.prefixes)

    def matching(self, path: str) -> list[Rule]:
        found = [self.exact[path]] if path in self.exact else []
        found.extend(rule for rule in self.prefixes if path.startswith(rule.path))
        return [rule for rule in found if rule.redirect_path != path]


def _load_rules() -> RuleSet:
    rules = AccessRule.objects.filter(enabled=True).prefetch_related("tags_any", "tags_all", "tags_none", "apply_tags")
    return RuleSet(
        [
            Rule(
                pk=rule.pk,
                path=rule.path,
                prefix=rule.prefix,
                any=frozenset(tag.pk for tag in rule.tags_any.all()),
                all=frozenset(tag.pk for tag in rule.tags_all.all()),
                none=frozenset(tag.pk for tag in rule.tags_none.all()),
                redirect_url=rule.redirect_url,
                message=rule.message,
                staff_pass=rule.staff_pass,
                apply=tuple(sorted(tag.pk for tag in rule.apply_tags.all())),
                redirect_path=_local_path(rule.redirect_url),
            )
            for rule in rules
        ]
    )


_rules = freshness.Memo(RULES_KIND, _load_rules)


def current_rules() -> RuleSet:
    return _rules.get()


def watch_rules() -> None:
    """Reload the rules everywhere when a rule, its tags, or a tag changes (called from UsersConfig.ready)."""
    freshness.watch(RULES_KIND, AccessRule, Tag)

    def on_tags_changed(sender, action, **kwargs):
        if action in ("post_add", "post_remove", "post_clear"):
            freshness.changed(RULES_KIND)

    for field in ("tags_any", "tags_all", "tags_none", "apply_tags"):
        through = getattr(AccessRule, field).through
        m2m_changed.connect(on_tags_changed, sender=through, weak=False, dispatch_uid=f"access_rules:{field}")


def is_never_locked(path: str, match: ResolverMatch | None, request=None) -> bool:
    """Whether no rule may cover this page. `request`: the request for it, when there is one (views marked
    `never_locked(when=...)` are exempt only for the requests their test accepts)."""
    if path.startswith("/" + settings.STATIC_URL.lstrip("/")):
        return True
    if match is None:
        return False
    mark = getattr(match.func, "never_locked", False)
    if mark is True or (callable(mark) and request is not None and mark(request)):
        return True
    return bool(set(match.namespaces) & NEVER_LOCKED_NAMESPACES) or match.url_name in NEVER_LOCKED_URL_NAMES


class AccessRuleMiddleware:
    """Enforces the access rules; put it after AuthenticationMiddleware. Also marks the responses of DRF views
    gated by HasTags `Cache-Control: private`."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if getattr(request, GATED_FLAG, False):
            mark_private(response)
        return response

    def process_view(self, request, view_func, view_args, view_kwargs):
        # Pages no rule may cover are let through before the rules are even read: /healthz must answer (503)
        # when the database is down, and the webhook must not wait on a configuration read.
        if is_never_locked(request.path_info, request.resolver_match, request):
            return None
        rules = current_rules()
        if not rules:
            return None
        matching = rules.matching(request.path_info)
        if not matching:
            return None
        setattr(request, GATED_FLAG, True)
        user = request.user
        if not is_authenticated(user):
            return mark_private(redirect_to_login(request.get_full_path(), settings.LOGIN_URL))
        held = user_tags(user)
        for rule in matching:
            if not rule.allows(user, held):
                redirect_url = rule.redirect_url
                if redirect_url and _refused_there_too(rules, redirect_url, user, held):
                    redirect_url = ""  # sending them on would only bounce them between locked pages
                described = f"{rule.path}{'*' if rule.prefix else ''}"
                return mark_private(refuse(request, redirect_url, rule.message, rule=described))
        to_apply = sorted({pk for rule in matching for pk in rule.apply} - held.keys())
        if to_apply:
            _apply_on_visit(user, to_apply)
        return None


def _apply_on_visit(user, tag_pks: list[int]) -> None:
    from .changes import apply_tags

    try:
        apply_tags(user, list(Tag.objects.filter(pk__in=tag_pks)))
    except (NotAManualSegment, CustomerIOError) as exc:
        # The page still opens: the rule's admin is told, the visitor is not punished for it.
        logger.error("Access rule could not apply tags %s to user %s: %s", tag_pks, user.pk, exc)


def _local_path(url: str) -> str | None:
    parts = urlsplit(url)
    return None if not url or parts.scheme or parts.netloc else parts.path


def _refused_there_too(rules: RuleSet, url: str, user, held) -> bool:
    path = _local_path(url)
    if path is None:
        return False  # another site
    try:
        match = resolve(path)
    except Resolver404:
        match = None
    if is_never_locked(path, match):
        return False
    return any(not rule.allows(user, held) for rule in rules.matching(path))
