"""Backfills: the `manage.py cio_*` commands' work, for every user at once.

Where WP Fusion spends one or more Customer.io calls per user, these read Customer.io in bulk — segment
membership pages of up to 30,000 people, attributes of 100 people per call, writes in /api/v2/batch requests of
up to 500 KB — and change the database in bulk, under the same account rules as the webhooks
(users.services.accounts) and with the same tag signals (users.services.tags).

    segment_sync   Customer.io segments -> Tag rows
    tag_resync     everyone's tags from membership scans
    meta_pull      attributes -> user fields, through the field mappings
    user_push      user fields -> Customer.io, through the field mappings
    user_import    a segment's members -> users (the `add` rules), resumable
"""
