from django_tasks import task

from .services import outbox_sender, segment_sender


@task()
def send_segment_changes() -> None:
    """Send the tag changes waiting for Customer.io (all users together). Never raises for Customer.io trouble:
    failed changes wait for their retry, which the worker's sweep picks up."""
    segment_sender.send_due()


@task()
def send_outbox() -> None:
    """Send the profile changes, events and login links waiting for Customer.io (all people together). Never raises
    for Customer.io trouble: failed rows wait for their retry, which the worker's sweep picks up."""
    outbox_sender.send_due()
