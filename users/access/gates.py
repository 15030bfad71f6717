"""Gates for views: the decorator, the class-based view mixin and the DRF permission. One rule for all three:

- an anonymous visitor goes to the login page with ?next= (DRF: 401), gated content needs a logged-in user;
- a logged-in user without the tags gets `redirect_url` with ?next= when one is given, else a 403 page (DRF: 403);
- `staff_pass=True` lets staff through whatever their tags;
- every response of a gated view says `Cache-Control: private`: it differs per user, so no shared cache may keep it.
"""

from dataclasses import dataclass
from functools import wraps
from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.utils.cache import patch_cache_control, patch_vary_headers
from rest_framework.exceptions import APIException
from rest_framework.permissions import BasePermission

from ..tracking import track_if_enabled
from .checks import as_list, has_tags, is_authenticated

DENIED_TEMPLATE = "users/access_denied.html"
DEFAULT_MESSAGE = "You do not have access to this page."
# Set on a request whose response must be marked private by the access middleware (DRF views, whose responses a
# permission class cannot touch).
GATED_FLAG = "_tags_gated"


@dataclass(frozen=True)
class TagGate:
    any: tuple = ()
    all: tuple = ()
    none: tuple = ()
    redirect_url: str | None = None
    staff_pass: bool = False
    message: str = DEFAULT_MESSAGE

    @classmethod
    def of(cls, any=(), all=(), none=(), redirect_url=None, staff_pass=False, message=DEFAULT_MESSAGE):
        return cls(
            tuple(as_list(any)),
            tuple(as_list(all)),
            tuple(as_list(none)),
            redirect_url or None,
            staff_pass,
            message or DEFAULT_MESSAGE,
        )

    def allows(self, user) -> bool:
        if not is_authenticated(user):
            return False
        if self.staff_pass and user.is_staff:
            return True
        return has_tags(user, any=self.any, all=self.all, none=self.none)

    def refusal(self, request):
        """The response for a visitor this gate refuses (None when it lets them through)."""
        if not is_authenticated(request.user):
            return redirect_to_login(request.get_full_path(), settings.LOGIN_URL)
        if self.allows(request.user):
            return None
        return refuse(request, self.redirect_url, self.message, rule=self.describe())

    def describe(self) -> str:
        """The gate in words, for the access_refused event: "any: VIP, Gold; none: Banned"."""
        parts = [
            f"{name}: {', '.join(map(str, refs))}" for name in ("any", "all", "none") if (refs := getattr(self, name))
        ]
        return "; ".join(parts)


def refuse(request, redirect_url: str | None, message: str, *, rule: str = ""):
    """Send a refused, logged-in visitor to `redirect_url` (with ?next=) or show them the 403 page. `rule` names
    what refused them, for the access_refused event Customer.io may be sent (users.tracking)."""
    track_if_enabled("event_access_refused", request.user, "access_refused", {"path": request.path, "rule": rule})
    if redirect_url and urlsplit(redirect_url).path != request.path:  # never redirect a page to itself
        return HttpResponseRedirect(with_next(redirect_url, request.get_full_path()))
    return TemplateResponse(request, DENIED_TEMPLATE, {"message": message or DEFAULT_MESSAGE}, status=403)


def with_next(url: str, next_url: str) -> str:
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}{urlencode({'next': next_url}, safe='/')}"


def mark_private(response):
    patch_cache_control(response, private=True)
    patch_vary_headers(response, ["Cookie"])
    return response


def tags_required(any=(), all=(), none=(), redirect_url=None, staff_pass=False, message=DEFAULT_MESSAGE):
    """View decorator: the view runs only for logged-in users holding the tags (see has_tags)."""
    gate = TagGate.of(any, all, none, redirect_url, staff_pass, message)

    def decorator(view):
        @wraps(view)
        def gated(request, *args, **kwargs):
            response = gate.refusal(request)
            if response is None:
                response = view(request, *args, **kwargs)
            return mark_private(response)

        return gated

    return decorator


class TagsRequiredMixin:
    """For class-based views: set `tags_any`, `tags_all`, `tags_none` (and optionally `tags_redirect_url`,
    `tags_staff_pass`, `tags_message`). Put it first among the bases so it runs before the view's own dispatch."""

    tags_any = ()
    tags_all = ()
    tags_none = ()
    tags_redirect_url = None
    tags_staff_pass = False
    tags_message = DEFAULT_MESSAGE

    def get_tag_gate(self) -> TagGate:
        return TagGate.of(
            self.tags_any,
            self.tags_all,
            self.tags_none,
            self.tags_redirect_url,
            self.tags_staff_pass,
            self.tags_message,
        )

    def dispatch(self, request, *args, **kwargs):
        response = self.get_tag_gate().refusal(request)
        if response is None:
            response = super().dispatch(request, *args, **kwargs)
        return mark_private(response)


class NotLoggedIn(APIException):
    # DRF turns its own NotAuthenticated into 403 when the first authenticator sends no WWW-Authenticate header
    # (session authentication sends none); an API client must be able to tell "log in" from "not allowed".
    status_code = 401
    default_detail = "Log in to use this."
    default_code = "not_authenticated"


class HasTags(BasePermission):
    """DRF permission: 401 for anonymous requests, 403 without the tags, never a redirect.

        permission_classes = [HasTags(any=["VIP"])]

    An instance stands in for a class in `permission_classes` (DRF calls it to get the permission). Used as a bare
    class, `HasTags` reads `tags_any` / `tags_all` / `tags_none` / `tags_staff_pass` from the view."""

    message = "You do not have the tags this needs."

    def __init__(self, any=(), all=(), none=(), staff_pass=False):
        self.gate = TagGate.of(any, all, none, staff_pass=staff_pass)

    def __call__(self):
        return self

    def has_permission(self, request, view):
        setattr(request._request, GATED_FLAG, True)
        user = request.user
        if not is_authenticated(user):
            raise NotLoggedIn()
        gate = self.gate
        if not (gate.any or gate.all or gate.none or gate.staff_pass):
            gate = TagGate.of(
                getattr(view, "tags_any", ()),
                getattr(view, "tags_all", ()),
                getattr(view, "tags_none", ()),
                staff_pass=getattr(view, "tags_staff_pass", False),
            )
        return gate.allows(user)
