"""Webhook requests skip the site middleware they have no use for.

Customer.io sends no cookie, logs nobody in, opens no page and frames nothing, yet every request passed through
sessions, CSRF, authentication, messages, access rules, clickjacking protection and django-axes — about a fifth of
what accepting a queued webhook costs (bench/accept_profile.py measures each). WebhookShortcutMiddleware sits right
after SecurityMiddleware: a request whose view is marked `skips_site_middleware` is resolved and served there, and
the middleware below it never runs for that request. Every other request goes down the whole list as before.

Hand-written: Django has no per-view middleware exclusion (its decorators only add work), and the alternative —
each middleware testing the path itself — would spread the webhook's URLs over a dozen classes.
"""

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


class WebhookShortcutMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            match = get_resolver(getattr(request, "urlconf", None)).resolve(request.path_info)
        except Resolver404:
            return self.get_response(request)
        marked = getattr(match.func, MARK, None)
        if marked is None or (marked is not True and not marked(request)):
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
