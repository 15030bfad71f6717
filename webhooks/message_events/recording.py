"""Storing a message event as it arrives: one INSERT, committed on its own (webhooks.message_events.waking then
wakes the worker now and then).

Customer.io retries an event it did not see answered 2xx, for days, with the same event_id: the INSERT is
`ON CONFLICT DO NOTHING` on the event_id's unique index (PostgreSQL; SQLite's `INSERT OR IGNORE`), so a retry stores
nothing and the statement says, by returning no id, that the event was known. No transaction of its own beyond the
statement's, no SELECT first, no task row: the answer waits for one write.
"""

from django.db import connections, router

from ..models import MessageEvent
from ..row_inserts import PreparedInsert, server_bound_cursor

_inserts: dict[str, PreparedInsert] = {}


def record(values: dict) -> bool:
    """Store the event whose row values are `values` (webhooks.message_events.fields), unless its event_id is stored
    already. Returns whether it was new."""
    alias = router.db_for_write(MessageEvent)
    connection = connections[alias]
    if connection.vendor not in ("postgresql", "sqlite"):  # another database: the ORM's way, without the answer
        MessageEvent.objects.using(alias).bulk_create([MessageEvent(**values)], ignore_conflicts=True)
        return True
    prepared = _inserts.get(alias)
    if prepared is None:
        prepared = _inserts[alias] = PreparedInsert(MessageEvent, returning=True, ignore_conflicts=True)
    sql, params = prepared.statement(alias, values)
    with server_bound_cursor(connection) if connection.vendor == "postgresql" else connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone() is not None
