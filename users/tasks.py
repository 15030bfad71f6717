from django_tasks import task

from .services import segment_sender


@task()
def send_segment_changes() -> None:
    """Send the tag changes waiting for Customer.io (all users together). Never raises for Customer.io trouble:
    failed changes wait for their retry, which the worker's sweep picks up."""
    segment_sender.send_due()
