"""Customer.io -> site, the front door: the DRF view that receives journey webhooks and everything it needs to
decide what a request is (key, throttle, body, contact) before it is recorded and handed to the action registry
(webhooks.actions). May use webhooks.queue to enqueue; the queue never imports this package."""
