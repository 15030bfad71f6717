"""webhooks.queue.task_rows writes django-tasks-db's table directly: these fail when the installed django-tasks-db no
longer matches what it writes (a field added, renamed or retyped; a value the backend now writes differently)."""

from datetime import timedelta

import pytest
from django.db import IntegrityError, models
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from webhooks.models import WebhookDelivery
from webhooks.queue import task_rows
from webhooks.tasks import process_delivery

pytestmark = pytest.mark.django_db

# django-tasks-db 0.13.0's DBTaskResult: field name -> (column, field class). A change here means reading
# django-tasks-db's backend again (DatabaseBackend._task_to_db_task) and updating webhooks/queue/task_rows.py to match.
KNOWN_LAYOUT = {
    "id": ("id", "UUIDField"),
    "status": ("status", "CharField"),
    "enqueued_at": ("enqueued_at", "DateTimeField"),
    "started_at": ("started_at", "DateTimeField"),
    "finished_at": ("finished_at", "DateTimeField"),
    "args_kwargs": ("args_kwargs", "JSONField"),
    "priority": ("priority", "IntegerField"),
    "task_path": ("task_path", "TextField"),
    "worker_ids": ("worker_ids", "JSONField"),
    "queue_name": ("queue_name", "CharField"),
    "backend_name": ("backend_name", "CharField"),
    "run_after": ("run_after", "DateTimeField"),
    "return_value": ("return_value", "JSONField"),
    "exception_class_path": ("exception_class_path", "TextField"),
    "traceback": ("traceback", "TextField"),
}


def test_the_table_layout_is_the_one_task_rows_was_written_for():
    layout = {f.name: (f.column, type(f).__name__) for f in DBTaskResult._meta.concrete_fields}
    assert layout == KNOWN_LAYOUT
    assert DBTaskResult._meta.db_table == "django_tasks_database_dbtaskresult"


def test_every_field_task_rows_leaves_out_fills_itself():
    assert set(task_rows.WRITTEN_FIELDS) <= set(KNOWN_LAYOUT)
    for f in DBTaskResult._meta.concrete_fields:
        if f.name in task_rows.WRITTEN_FIELDS:
            continue
        fills_itself = f.has_default() or f.null or getattr(f, "auto_now_add", False)
        # Text fields without a default are "" (Django's empty value for a non-null string field).
        fills_itself = fills_itself or isinstance(f, models.TextField | models.CharField)
        assert fills_itself, f"DBTaskResult.{f.name} needs a value task_rows does not write"


def test_the_rows_name_the_task_as_it_is_declared():
    declared = (process_delivery.module_path, process_delivery.priority, process_delivery.queue_name)
    assert (*declared, process_delivery.backend) == task_rows.PROCESS_DELIVERY


def _row(task_id) -> dict:
    """Every field of the row but its id and when it was written."""
    row = DBTaskResult.objects.get(pk=task_id)
    return {
        f.name: getattr(row, f.name) for f in DBTaskResult._meta.concrete_fields if f.name not in ("id", "enqueued_at")
    }


@pytest.mark.parametrize("run_after", [None, timedelta(minutes=5)])
def test_a_row_written_here_is_the_row_the_tasks_api_writes(run_after):
    when = timezone.now() + run_after if run_after else None
    through_api = (process_delivery.using(run_after=when) if when else process_delivery).enqueue(41)
    direct_id = task_rows.new_task_id()
    task_rows.insert_task(direct_id, 41, when)
    assert _row(direct_id) == _row(through_api.id)
    # And the Tasks API reads it back as process_delivery(41), ready to run.
    result = process_delivery.get_result(direct_id)
    assert (result.args, result.kwargs, result.status) == ([41], {}, "READY")
    assert result.task.func is process_delivery.func


@pytest.mark.django_db(transaction=True)  # outside any transaction: on PostgreSQL, the one-statement path
def test_a_delivery_written_with_its_task_names_it_as_the_tasks_api_would():
    delivery = task_rows.insert_delivery_with_task({"action": "update_tags", "contact": "a@example.com"})
    assert WebhookDelivery.objects.get(pk=delivery.pk).contact == "a@example.com"
    assert WebhookDelivery.objects.get(pk=delivery.pk).task_id == delivery.task_id
    through_api = process_delivery.enqueue(delivery.pk)
    assert _row(delivery.task_id) == _row(through_api.id)


@pytest.mark.django_db(transaction=True)
def test_a_taken_dedup_key_writes_neither_row():
    task_rows.insert_delivery_with_task({"action": "update_tags", "dedup_key": "key:1"})
    with pytest.raises(IntegrityError):
        task_rows.insert_delivery_with_task({"action": "update_tags", "dedup_key": "key:1"})
    assert (WebhookDelivery.objects.count(), DBTaskResult.objects.count()) == (1, 1)
