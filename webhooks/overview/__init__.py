"""The admin's Overview page (/admin/webhooks/overview/): the last 24 hours and 7 days in charts drawn on the server,
and the queue, the workers and the users' outboxes now.

figures.py  the aggregate queries (a fixed number, whatever the number of rows)
charts.py   the geometry of a stacked bar chart in SVG
page.py     the figures as the page's charts and lines
admin.py    the admin page itself (registered through a proxy model, so the admin index lists it under Webhooks)
"""
