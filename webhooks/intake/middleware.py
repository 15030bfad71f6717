"""Webhook requests skip the site middleware they have no use for.

Customer.io sends no cookie, logs nobody in, opens no page and frames nothing, yet every request passed through
sessions, CSRF, authentication, messages, access rules, clickjacking protection and django-axes — about 60 us of
CPU a request, a fifth of what accepting a queued webhook costs in Python (bench/accept_profile.py measures each).
WebhookShortcutMiddleware sits right after SecurityMiddleware: a request whose view is marked
`skips_site_middleware` is resolved and served there. Every other request goes down the whole list as before.

What a webhook request therefore does without, besides those: CommonMiddleware (its ALLOWED_HOSTS check is made
here; DISALLOWED_USER_AGENTS and the slash and www redirects do not apply to Customer.io; Content-Length is set
here), `process_view` / `process_exception` hooks, ATOMIC_REQUESTS (the webhook manages its own transactions), and
any middleware a site adds below this one — put one above it to have it run for webhooks too.

Hand-written: Django has no per-view middleware exclusion (its decorators only add work), and the alternative —
each middleware testing the path itself — would spread the webhook's URLs over a dozen classes.
"""

import functools

from django.conf import settings
from django.urls import Resolver404, get_resolver

MARK = "skips_site_middleware"


def skips_site_middleware(view=None, *, when=None):
    """Mark a view served by WebhookShortcutMiddleware; `when(request)` narrows it to some requests (the site
    root is the webhook only when its query string says so). Copied by functools.wraps, so csrf_exempt() and
    friends keep it."""

    def mark(view):
        setattr(view, MARK, when or True)
        return view

    return mark(view) if view is not None else mark


@functools.lru_cache(maxsize=512)
def marked_route(urlconf, path: str):
    """(the URL's match, its mark) when `path` leads to a marked view, else None. Kept per path: resolving costs
    about as much as the rest of this middleware, and a site has few paths (strangers' probes of random paths
    only push older entries out)."""
    try:
        match = get_resolver(urlconf).resolve(path)
    except Resolver404:
        return None
    marked = getattr(match.func, MARK, None)
    return (match, marked) if marked is not None else None


class WebhookShortcutMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        # Keyed by the URLconf's name, so a test's override of ROOT_URLCONF is never answered from another's routes.
        route = marked_route(getattr(request, "urlconf", None) or settings.ROOT_URLCONF, request.path_info)
        if route is None:
            return self.get_response(request)
        match, marked = route
        if marked is not True and not marked(request):
            return self.get_response(request)
        request.get_host()  # ALLOWED_HOSTS, as CommonMiddleware checks it for every other request (400 if not)
        request.resolver_match = match
        response = match.func(request, *match.args, **match.kwargs)
        if callable(getattr(response, "render", None)):
            response = response.render()  # DRF's Response is a template response: Django's handler would render it
        if not response.streaming and not response.has_header("Content-Length"):
            # CommonMiddleware's job for every other page: with it, gunicorn keeps the connection alive.
            response["Content-Length"] = str(len(response.content))
        return response
