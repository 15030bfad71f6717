"""The webhook actions Customer.io journeys call, each declared once: the view, the queue, processing, the settings
page's URL list and `manage.py webhook_urls` read this registry (a test holds docs/webhooks.md's table to it)."""

import enum
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode

from settings_app.models import WebhookSettings
from settings_app.services import site_base_url
from users.services import accounts


class ActionName(enum.StrEnum):
    """The URL's wpf_action, as WP Fusion names them."""

    UPDATE_TAGS = "update_tags"
    UPDATE = "update"
    ADD = "add"
    TEST = "test"


@dataclass(frozen=True)
class WebhookAction:
    name: ActionName
    # The account service that runs it; None for an action that answers without touching anybody.
    handler: Callable[[accounts.ActionRequest], accounts.ActionResult] | None
    # One contact's waiting deliveries are processed once, with the strongest action among them (`add` does all
    # that `update` does, which does all that `update_tags` does).
    strength: int
    # Reads the person's attributes (so the queue fetches them for many contacts in one call).
    needs_person: bool

    @property
    def touches_user(self) -> bool:
        """Names a contact and may change their user: needs one in the request; may be queued and replayed."""
        return self.handler is not None


# In the order the settings page, `webhook_urls` and docs/webhooks.md list them.
ACTIONS: dict[str, WebhookAction] = {
    action.name: action
    for action in (
        WebhookAction(ActionName.UPDATE_TAGS, accounts.update_tags, strength=1, needs_person=False),
        WebhookAction(ActionName.UPDATE, accounts.update, strength=2, needs_person=True),
        WebhookAction(ActionName.ADD, accounts.add, strength=3, needs_person=True),
        WebhookAction(ActionName.TEST, None, strength=0, needs_person=False),
    )
}


def get_action(name: str) -> WebhookAction | None:
    return ACTIONS.get(name)


def strongest(names) -> str:
    return max(names, key=lambda name: ACTIONS[name].strength)


def user_actions() -> list[str]:
    """The actions that may change a user: those the queue batches and plans reads for."""
    return [action.name for action in ACTIONS.values() if action.touches_user]


def reporting_url(base_url: str | None = None) -> str:
    """The URL of the reporting webhook (message events), to paste into Customer.io's Reporting Webhooks."""
    return f"{(base_url or site_base_url()).rstrip('/')}/webhooks/customerio/reporting/"


def webhook_urls(base_url: str | None = None, access_key: str | None = None, with_key: bool = True) -> dict[str, str]:
    """The URL to paste into Customer.io for each action, keyed by action. with_key=False: the URL for the header
    form (the key travels in `Authorization: Bearer KEY`, so it stays out of URLs and access logs)."""
    base = (base_url or site_base_url()).rstrip("/")
    if not with_key:
        return {name: f"{base}/?{urlencode({'wpf_action': name})}" for name in ACTIONS}
    key = access_key if access_key is not None else WebhookSettings.load().access_key
    return {name: f"{base}/?{urlencode({'wpf_action': name, 'access_key': key})}" for name in ACTIONS}
