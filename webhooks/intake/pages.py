"""The page a site admin sees when they open the `test` URL in a browser: whether the site answered, which key
matched (described, never shown) and what to do next. Customer.io and every other client get JSON
(webhooks.intake.negotiation decides)."""

from django.template.loader import render_to_string
from rest_framework.renderers import BaseRenderer

from settings_app.access_keys import KeyMatch
from settings_app.services import site_base_url


class BrowserPageRenderer(BaseRenderer):
    """The "Connected" page for a request the site accepted; "Not connected", with the reason, for one it refused."""

    media_type = "text/html"
    format = "html"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        context = renderer_context or {}
        request, response = context.get("request"), context.get("response")
        # What authentication found, if it ran: the page of a request refused before it must not run it now.
        key = getattr(request, "_auth", None)
        connected = response is not None and response.status_code == 200
        return render_to_string(
            "webhooks/connected.html",
            {
                "connected": connected,
                "site": site_base_url(),
                "key": key.describe() if isinstance(key, KeyMatch) else "",
                "status": response.status_code if response is not None else "",
                "answer": data if isinstance(data, dict) else {},
            },
        )
