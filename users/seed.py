"""Rows the product needs in every database. Used by the data migration and by the test fixtures that re-seed
after a transactional test flushed the tables. `Role` may be a historical model."""


def seed_roles(Role):
    # Only `subscriber`: the guide has site admins register `customer` themselves before role=customer works.
    if not Role.objects.filter(is_default=True).exists():
        Role.objects.update_or_create(
            slug="subscriber", defaults={"name": "Subscriber", "is_default": True, "webhook_assignable": True}
        )
