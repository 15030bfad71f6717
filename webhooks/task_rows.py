"""The task row that makes a worker process a delivery, written straight into django-tasks-db's table.

Every queued webhook needs one, inside the transaction that records the delivery. Through the Tasks API
(`process_delivery.enqueue(pk)`) the backend picks the task's id while it inserts, so the delivery row — which the
task's arguments must name first — needed a second statement (an UPDATE) to learn it, and each call also builds and
validates a Task, normalises the arguments, sends `task_enqueued` (only a debug log line listens) and builds a
TaskResult. Here the id is chosen first (a uuid4, as the backend's default), so the delivery is inserted already
naming its task, and the task row gets exactly the values django-tasks-db's DatabaseBackend writes for
`process_delivery` (`_task_to_db_task`); the worker (`db_worker`) runs it like any other.

This is the only code that writes django-tasks-db's table directly. tests/webhooks/test_task_rows.py holds it to the
installed version: it fails when the model's fields or columns change, or when a row written here differs from one
the Tasks API writes.
"""

import uuid

from django_tasks_db.models import DBTaskResult, get_date_max

# The model fields written here; the others take their model defaults (the test compares both with the model).
WRITTEN_FIELDS = ("id", "args_kwargs", "priority", "task_path", "queue_name", "backend_name", "run_after")


def new_task_id() -> str:
    return str(uuid.uuid4())


def insert_task(task_id: str, delivery_id: int, run_after=None) -> None:
    """The row of `process_delivery(delivery_id)`, to run after `run_after` (at once when None)."""
    from .tasks import process_delivery

    DBTaskResult.objects.create(
        id=task_id,
        args_kwargs={"args": [delivery_id], "kwargs": {}},
        priority=process_delivery.priority,
        task_path=process_delivery.module_path,
        queue_name=process_delivery.queue_name,
        backend_name=process_delivery.backend,
        run_after=run_after if run_after is not None else get_date_max(),
    )
