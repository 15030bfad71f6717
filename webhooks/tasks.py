"""The queue's one task. Queued rows store its dotted path, webhooks.tasks.process_delivery: it keeps that name."""

from django_tasks import task

from .queue import drain
from .queue.task_rows import PROCESS_DELIVERY


@task(priority=PROCESS_DELIVERY.priority, queue_name=PROCESS_DELIVERY.queue_name, backend=PROCESS_DELIVERY.backend)
def process_delivery(delivery_id: int) -> None:
    """Process a queued webhook delivery (and whatever it can be processed together with). Never raises: outcomes,
    retries and failures are recorded on the deliveries themselves."""
    drain.process(delivery_id)
