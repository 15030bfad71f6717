"""The task row that makes a worker process a delivery, written straight into django-tasks-db's table.

Every queued webhook needs one, committed with the delivery's row before the answer. Through the Tasks API
(`process_delivery.enqueue(pk)`) that took a transaction of four statements (BEGIN, the delivery's INSERT, the task's
INSERT, an UPDATE telling the delivery its task's id, COMMIT), and each call also built and validated a Task,
normalised the arguments, sent `task_enqueued` (only a debug log line listens) and built a TaskResult. Here the
task's id is chosen first (a uuid4, the backend's own default), so the delivery names its task from its INSERT, and
the task's arguments are built by the database from the id it gives the delivery. On PostgreSQL one statement writes
both rows (a data-modifying WITH: atomic on its own, one round trip, one commit); on SQLite two INSERTs run back to
back in one short transaction, both prepared before it begins. No save signals are sent: none listens on either
model but django-tasks-db's own, which fills run_after, written here. The task row holds exactly the values
django-tasks-db's DatabaseBackend writes for `process_delivery` (`_task_to_db_task`); `db_worker` runs it like any
other.

This is the only code that inserts into django-tasks-db's table. tests/webhooks/queue/test_task_rows.py holds it to the
installed version: it fails when the model's fields or columns change, or when a row written here differs from the
one the Tasks API writes for the same call.
"""

import uuid
from typing import NamedTuple

from django.db import connections, router, transaction
from django.db.models.expressions import RawSQL
from django_tasks import DEFAULT_TASK_BACKEND_ALIAS, DEFAULT_TASK_QUEUE_NAME
from django_tasks.base import DEFAULT_TASK_PRIORITY
from django_tasks_db.models import DBTaskResult, get_date_max

from ..models import WebhookDelivery
from ..row_inserts import PreparedInsert, server_bound_cursor

# The model fields written here; the others take their model defaults (the test compares both with the model).
WRITTEN_FIELDS = ("id", "args_kwargs", "priority", "task_path", "queue_name", "backend_name", "run_after")


class TaskDeclaration(NamedTuple):
    path: str
    priority: int
    queue_name: str
    backend: str


# The task of every row written here. Queued rows store its path, so webhooks/tasks.py keeps defining it under that
# name, declared with these values; described here rather than imported from there because the task's body calls
# into the queue, which writes these rows (tests/webhooks/queue/test_task_rows.py holds the two together).
PROCESS_DELIVERY = TaskDeclaration(
    path="webhooks.tasks.process_delivery",
    priority=DEFAULT_TASK_PRIORITY,
    queue_name=DEFAULT_TASK_QUEUE_NAME,
    backend=DEFAULT_TASK_BACKEND_ALIAS,
)


def new_task_id() -> str:
    return str(uuid.uuid4())


def _task_fields(run_after=None) -> dict:
    """What every row of `process_delivery` holds but its id and arguments (django-tasks-db's own values)."""
    return {
        "priority": PROCESS_DELIVERY.priority,
        "task_path": PROCESS_DELIVERY.path,
        "queue_name": PROCESS_DELIVERY.queue_name,
        "backend_name": PROCESS_DELIVERY.backend,
        "run_after": run_after if run_after is not None else get_date_max(),
    }


def insert_task(task_id: str, delivery_id: int, run_after=None) -> None:
    """The row of `process_delivery(delivery_id)`, to run after `run_after` (at once when None), in the caller's
    transaction."""
    args_kwargs = {"args": [delivery_id], "kwargs": {}}
    DBTaskResult(id=task_id, args_kwargs=args_kwargs, **_task_fields(run_after)).save(force_insert=True)


# The task's arguments, {"args": [<the delivery's id>], "kwargs": {}}, built by the database from the id it just gave
# the delivery, so both INSERTs are ready before the transaction starts (nothing computed while it holds locks).
_ARGS_OF_NEW_DELIVERY = {
    "postgresql": "jsonb_build_object('args', jsonb_build_array((SELECT id FROM new_delivery)), 'kwargs', '{}'::jsonb)",
    "sqlite": "json_object('args', json_array(last_insert_rowid()), 'kwargs', json_object())",
}


# Per database vendor: (the delivery's INSERT, the task's INSERT), built at the first accepted webhook.
_inserts: dict[str, tuple[PreparedInsert, PreparedInsert]] = {}


def _prepared_inserts(vendor: str) -> tuple[PreparedInsert, PreparedInsert]:
    inserts = _inserts.get(vendor)
    if inserts is None:
        args_kwargs = RawSQL(_ARGS_OF_NEW_DELIVERY[vendor], ())  # noqa: S611 (a constant of this module, no value in it)
        inserts = _inserts[vendor] = (
            # PostgreSQL's statement reads the delivery's id from RETURNING; SQLite's from last_insert_rowid().
            PreparedInsert(WebhookDelivery, returning=vendor == "postgresql"),
            PreparedInsert(DBTaskResult, fixed={**_task_fields(), "args_kwargs": args_kwargs}),
        )
    return inserts


class QueuedRow(NamedTuple):
    pk: int  # the delivery's
    task_id: str


def insert_delivery_with_task(values: dict) -> QueuedRow:
    """Insert a delivery with the fields `values` and the task that will process it, together: both or neither.
    Raises IntegrityError (and writes nothing) when its dedup key is taken. (No model instance is built: the accept
    answers with the id alone, and the worker loads the row.)"""
    values = {**values, "task_id": new_task_id()}
    alias = router.db_for_write(WebhookDelivery)
    connection = connections[alias]
    if connection.vendor not in _ARGS_OF_NEW_DELIVERY:  # another database: the ORM's two INSERTs
        delivery = WebhookDelivery(**values)
        with transaction.atomic(using=alias):
            delivery.save(force_insert=True, using=alias)
            insert_task(delivery.task_id, delivery.pk)
        return QueuedRow(delivery.pk, delivery.task_id)
    postgresql = connection.vendor == "postgresql"
    delivery_insert, task_insert = _prepared_inserts(connection.vendor)
    delivery_sql, delivery_params = delivery_insert.statement(alias, values)
    task_sql, task_params = task_insert.statement(alias, {"id": values["task_id"]})
    if postgresql:
        # One statement, atomic on its own. Both parts are the ORM's own INSERTs, every value a parameter.
        statement = f"WITH new_delivery AS ({delivery_sql}) {task_sql} RETURNING (SELECT id FROM new_delivery)"  # noqa: S608
        with server_bound_cursor(connection) as cursor:
            cursor.execute(statement, (*delivery_params, *task_params))
            (pk,) = cursor.fetchone()
    else:
        # SQLite: BEGIN IMMEDIATE takes the write lock; two statements back to back, then COMMIT releases it.
        with transaction.atomic(using=alias), connection.cursor() as cursor:
            cursor.execute(delivery_sql, delivery_params)
            pk = cursor.lastrowid
            cursor.execute(task_sql, task_params)
    return QueuedRow(pk, values["task_id"])
