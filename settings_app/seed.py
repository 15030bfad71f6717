"""Default field mappings (used by the data migration and test fixtures; `FieldMapping` may be historical)."""

DEFAULT_FIELD_MAPPINGS = [
    # (Customer.io attribute, user field, active)
    ("email", "email", True),
    ("first_name", "first_name", True),
    ("last_name", "last_name", True),
    # Off until the site admin turns them on, as in WP Fusion.
    ("user_login", "username", False),
    ("user_pass", "password", False),
]
# The site's own dates, sent to Customer.io (created_at is the attribute Customer.io treats as the sign-up time).
DEFAULT_PUSH_MAPPINGS = [
    ("created_at", "date_joined"),
    ("last_login", "last_login"),
]


def seed_field_mappings(FieldMapping):
    for cio_attribute, user_field, active in DEFAULT_FIELD_MAPPINGS:
        FieldMapping.objects.get_or_create(
            cio_attribute=cio_attribute, user_field=user_field, defaults={"active": active}
        )


def seed_push_mappings(FieldMapping):
    for cio_attribute, user_field in DEFAULT_PUSH_MAPPINGS:
        FieldMapping.objects.get_or_create(
            cio_attribute=cio_attribute, user_field=user_field, defaults={"active": True, "direction": "push"}
        )
