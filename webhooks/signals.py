"""Signals of the webhooks app, for your own code (docs/api.md). users.signals holds the signals about users; this
one carries a webhooks model (a MessageEvent), and users must not import webhooks, so it lives here."""

from django.dispatch import Signal

message_event_received = Signal()
"""Customer.io reported a message event (sent, delivered, opened, clicked, bounced, ...) through its reporting
webhook. Sent by the background worker after the commit that processed the event, `sender` the `MessageEvent` class,
with `event` (the `MessageEvent`) and `user` (the site's `User` it is about, or `None` when nobody on the site has the
person's email or Customer.io id). An event first processed with `user=None` is sent again, once, when a user with
that email or Customer.io id appears later and the event is linked to them: a receiver that ignores `user=None`
sees each event at most once."""
