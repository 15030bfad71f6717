"""Content negotiation for the webhook, in DRF's slot. DRF's default answers 406 to an Accept it cannot meet and
picks a parser by Content-Type; Customer.io reads JSON whatever it says, and journeys send JSON under whatever
Content-Type their author set. So: JSON always — except a browser opening the `test` URL, which gets the
"Connected" page — and the JSON-or-form parser for every body but a multipart one."""

from rest_framework.negotiation import BaseContentNegotiation


class WebhookNegotiation(BaseContentNegotiation):
    def select_parser(self, request, parsers):
        multipart = request.content_type.lstrip().lower().startswith("multipart/form-data")
        for parser in parsers:
            if (parser.media_type == "multipart/form-data") == multipart:
                return parser
        return None

    def select_renderer(self, request, renderers, format_suffix=None):
        # renderers: JSON first, the browser page second (CustomerIOWebhookView.renderer_classes).
        chosen = renderers[0]
        if len(renderers) > 1 and opened_in_a_browser(request._request):
            chosen = renderers[1]
        return chosen, chosen.media_type


def opened_in_a_browser(django_request) -> bool:
    """A person opening the `test` URL: a GET whose Accept names text/html (a browser's does; Customer.io's and
    curl's do not — `*/*` is not asking for HTML)."""
    return (
        django_request.method in ("GET", "HEAD")
        and "text/html" in django_request.META.get("HTTP_ACCEPT", "")
        and django_request.GET.get("wpf_action") == "test"
    )
