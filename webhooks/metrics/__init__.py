"""Prometheus metrics: what the webhook and the queue count (counters), the queue's figures read from the
database at scrape time (collector), the per-process files the client's multiprocess mode sums (files), and
/metrics itself (views). The Customer.io wire counts its own calls (cio.metrics).

The names, labels and meanings are listed in docs/operations.md ("Metrics"); deploy/'s alert rules and Grafana
dashboard are built on them, and tests/webhooks/metrics/ holds both to what /metrics exposes."""
