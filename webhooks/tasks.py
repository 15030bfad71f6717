from django_tasks import task

from . import queue


@task()
def process_delivery(delivery_id: int) -> None:
    """Process a queued webhook delivery (and whatever it can be processed together with). Never raises: outcomes,
    retries and failures are recorded on the deliveries themselves."""
    queue.process(delivery_id)
