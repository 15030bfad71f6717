from urllib.parse import urlencode

from users.services.welcome import site_base_url

from .models import WebhookSettings

# The actions Customer.io journeys call, in the order the admin and `webhook_urls` list them.
WEBHOOK_ACTIONS = ("update_tags", "update", "add", "test")


def webhook_urls(base_url: str | None = None, access_key: str | None = None) -> dict[str, str]:
    """The URL to paste into Customer.io for each action, keyed by action."""
    base = (base_url or site_base_url()).rstrip("/")
    key = access_key if access_key is not None else WebhookSettings.load().access_key
    return {action: f"{base}/?{urlencode({'wpf_action': action, 'access_key': key})}" for action in WEBHOOK_ACTIONS}
