"""Customer.io's message events (its reporting webhook): what the site keeps of each, and what it does with them.

The endpoint (webhooks.intake.reporting) checks the signature, reads the event into row values (`fields`) and stores
it (`recording`: one INSERT, once per Customer.io event id) before answering; everything else happens in the
background worker (`processing`): linking the event to a user, the admin's reactions (`reactions`) and the
`message_event_received` signal (webhooks.signals). An event whose person has no user yet waits, indexed, for a
user who appears later (`linking`)."""
