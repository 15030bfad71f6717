"""Queued mode: accept fast, keep every accepted delivery, drain within Customer.io's limits.

django-tasks-db runs tasks but neither retries them nor notices a worker that died, so the guarantees live on
WebhookDelivery: a worker claims deliveries with a lease it renews while it works; a sweep re-queues deliveries
whose lease expired or whose task went missing; a failure that may pass is retried with backoff.

One task processes more than its own delivery: every waiting delivery of the same contact (the strongest action
wins, so an old failure never blocks a newer delivery) and, for the actions that change users, the other waiting
ones up to WEBHOOK_PLAN_CLAIM_LIMIT (of which at most WEBHOOK_PLAN_ONE_BY_ONE_LIMIT contacts with an update or add,
so that workers share a broadcast): their attributes come 100 contacts a call, and their segments from the cheaper
of one call per contact or membership scans (planning); update_tags are written in bulk (bulk_tags), as
bulk_updates writes plain updates and bulk_adds creates new people with Return Password on.

In the order a delivery meets them: enqueue (with its task row: task_rows), settling, claiming, leases, people,
passwords_ahead, planning, holding, bulk_tags, bulk_updates, bulk_adds, retries — drain is the task's body that runs
them; recovery (the sweep) and worker (the loop and its heartbeat) run beside. The request side (the view, its
parsing and refusals) hands deliveries to the queue; nothing here imports it.
"""


class WorkerDied(Exception):
    """Recorded on the task of a worker that died mid-processing (its lease ran out); its delivery is re-queued or,
    past retrying, failed."""

    # Defined here, not beside the sweep that records it: failed task rows store this class's dotted path
    # (webhooks.queue.WorkerDied since before the queue was a package), and django-tasks imports it to show them.
