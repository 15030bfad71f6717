"""Pages for the site's own people (the admin is for staff)."""

import logging

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.shortcuts import redirect, resolve_url
from django.template.response import TemplateResponse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_http_methods

from settings_app.redaction import scrub

from .access import never_locked, user_tags
from .services import login_links
from .tracking import track_if_enabled

logger = logging.getLogger(__name__)

# Not django-axes' backend: a link is no password attempt, and login() needs the one backend that loads the user.
LOGIN_LINK_BACKEND = "django.contrib.auth.backends.ModelBackend"
LOGIN_LINK_REFUSED = (
    "This login link has expired or was already used — log in with your password, or reset it with “Forgot password?”."
)


@never_locked  # where every login without ?next= lands: no access rule may turn a fresh login into a refusal
@login_required
def account(request):
    """The person's profile, their tags and the way to change their password; staff see the same page."""
    tags = sorted(user_tags(request.user).values(), key=lambda tag: (str(tag).casefold(), tag.segment_id))
    response = TemplateResponse(request, "users/account.html", {"tags": tags, "title": "Your account"})
    # It shows one person's data: no shared cache may keep it.
    response["Cache-Control"] = "private"
    return response


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    """Django's set-a-new-password page (reset emails and welcome emails link to it), which also tells Customer.io
    of the reset when the password_reset event is on."""

    def form_valid(self, form):
        response = super().form_valid(form)
        track_if_enabled("event_password_reset", form.user, "password_reset")
        return response


@never_locked  # a rule on "/" must not send a person with a link to the login page instead of logging them in
@never_cache  # Cache-Control: no-store (and private): no proxy or browser cache keeps the page or its answer
@sensitive_variables("token")
@require_http_methods(["GET", "HEAD", "POST"])
def login_link(request, token):
    """A single-use login link (users.services.login_links), as sent in a journey's email.

    GET only shows a page whose form POSTs back here at once (JavaScript; a button without it), and the POST logs
    the person in. Mail scanners and link previews fetch every link in an email with GET before the person opens
    it: were GET to log in, the scanner would use the link up and the person would find it dead. The form carries
    Django's CSRF token, so no other site can make a browser log in to an account that is not theirs."""
    check = login_links.check_token(token)
    next_url = _safe_next(request)
    if check.user is not None and request.method == "POST" and not login_links.use_up(check.user):
        check = login_links.LinkCheck(None, "used by a request a moment before", check.user_id)
    if check.user is None:
        if request.user.is_authenticated and request.user.pk == check.user_id:
            # Their own link again (from the email, after it logged them in): they are where it would take them.
            return _no_referrer(redirect(next_url or resolve_url(settings.LOGIN_REDIRECT_URL)))
        # The same words whatever the reason and whoever the link was for.
        logger.info("A login link was refused (%s)", check.reason)
        messages.error(request, LOGIN_LINK_REFUSED)
        return _no_referrer(redirect_to_login(next_url) if next_url else redirect(settings.LOGIN_URL))
    if request.method != "POST":
        response = TemplateResponse(request, "users/login_link.html", {"next": next_url, "title": "Log in"})
        # Not no-referrer here: with it, browsers send "Origin: null" with the form's POST, which Django's CSRF
        # check refuses. strict-origin sends the site's origin alone, never the path that holds the token.
        response["Referrer-Policy"] = "strict-origin"
        return response
    _keep_token_out_of_axes(request)
    # login() sends user_logged_in, which sets last_login again (use_up() has already made the link single use).
    login(request, check.user, backend=LOGIN_LINK_BACKEND)
    logger.info("User %s logged in through a login link", check.user.pk)
    return _no_referrer(redirect(next_url or resolve_url(settings.LOGIN_REDIRECT_URL)))


def _safe_next(request) -> str:
    """The ?next= (or the form's next) when it stays on this site, as Django's LoginView decides; else ""."""
    candidate = request.POST.get("next") or request.GET.get("next") or ""
    allowed = url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return candidate if allowed else ""


def _no_referrer(response):
    # The next page is loaded with no Referer: the address it came from holds the token.
    response["Referrer-Policy"] = "no-referrer"
    return response


def _keep_token_out_of_axes(request) -> None:
    """django-axes stores each login's path in its AccessLog table (shown in the admin) and logs it: make it the
    path with the token masked. Axes reads its request attributes once per request, so they are filled first."""
    from axes.handlers.proxy import AxesProxyHandler

    AxesProxyHandler.update_request(request)
    request.axes_path_info = scrub(request.axes_path_info or "")
