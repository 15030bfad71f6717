"""The app's tasks, run by `manage.py webhook_worker`. Queued rows store each task's dotted path: the names stay.

- webhooks.tasks.process_delivery: a queued journey webhook delivery (one task row per delivery, webhooks.queue).
- webhooks.tasks.process_message_events: every message event waiting (one task for all of them, woken by
  webhooks.message_events.waking).
"""

from django_tasks import task

from .message_events import processing as message_events
from .queue import drain
from .queue.task_rows import PROCESS_DELIVERY


@task(priority=PROCESS_DELIVERY.priority, queue_name=PROCESS_DELIVERY.queue_name, backend=PROCESS_DELIVERY.backend)
def process_delivery(delivery_id: int) -> None:
    """Process a queued webhook delivery (and whatever it can be processed together with). Never raises: outcomes,
    retries and failures are recorded on the deliveries themselves."""
    drain.process(delivery_id)


@task(queue_name=PROCESS_DELIVERY.queue_name, backend=PROCESS_DELIVERY.backend)
def process_message_events() -> None:
    """Link the waiting message events to users, run the admin's reactions and send message_event_received, until
    none are left. A failing reaction is logged and does not stop the others."""
    _, more = message_events.process_waiting()
    if more:  # its time is spent: the rest go behind the deliveries queued meanwhile
        process_message_events.enqueue()
