"""Indexes that every written tag and activity line paid for, replaced by fewer that serve the same reads: UserTag's
own index on `user` (the unique (user, tag) index serves its look-ups), and ActivityLog's single-column indexes on
level, source and delivery_id (on PostgreSQL with a second, LIKE index each for level and source, which no query
uses) by (level, created_at) and (source, created_at) for the admin's filters and a delivery_id index that leaves
out the lines of no delivery (a backfill writes millions).

The database part is written by hand. The operations makemigrations writes would drop and re-create UserTag's
foreign key, checking every row while the users table is locked, and on SQLite rebuild both tables. Here the new
indexes are built first and the old ones dropped after, on PostgreSQL CONCURRENTLY (outside a transaction, so the
migration is not atomic): webhooks, logins and backfills go on meanwhile. Any plain single-column index on those
columns is dropped, whatever its name. Run again after an interruption, it finishes the work: an index that a
cancelled concurrent build left invalid is built again before any old one is dropped.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

NEW_INDEXES = [
    ("activitylog", models.Index(fields=["level", "created_at"], name="users_activitylog_level_time")),
    ("activitylog", models.Index(fields=["source", "created_at"], name="users_activitylog_source_time")),
    (
        "activitylog",
        models.Index(
            fields=["delivery_id"], name="users_activitylog_delivery", condition=models.Q(delivery_id__isnull=False)
        ),
    ),
]
# (model, field, column) of the single-column indexes this migration drops.
OLD_INDEXED = [
    ("usertag", "user", "user_id"),
    ("activitylog", "level", "level"),
    ("activitylog", "source", "source"),
    ("activitylog", "delivery_id", "delivery_id"),
]
NEW_NAMES = {index.name for _, index in NEW_INDEXES}


def _concurrently(schema_editor) -> dict:
    return {"concurrently": True} if schema_editor.connection.vendor == "postgresql" else {}


def _indexes(schema_editor, model) -> dict:
    with schema_editor.connection.cursor() as cursor:
        return schema_editor.connection.introspection.get_constraints(cursor, model._meta.db_table)


def _usable(schema_editor, model, name: str) -> bool:
    """Whether index `name` exists and is usable: a concurrent build that was cancelled leaves an invalid index
    behind, written to on every insert and read by no query."""
    if name not in _indexes(schema_editor, model):
        return False
    if schema_editor.connection.vendor != "postgresql":
        return True
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = %s AND pg_table_is_visible(c.oid)",
            [name],
        )
        return all(valid for (valid,) in cursor.fetchall())


def _drop_index(schema_editor, name: str) -> None:
    concurrently = "CONCURRENTLY " if _concurrently(schema_editor) else ""
    schema_editor.execute(f"DROP INDEX {concurrently}IF EXISTS {schema_editor.quote_name(name)}")


def _build(schema_editor, model, index) -> None:
    if not _usable(schema_editor, model, index.name):
        _drop_index(schema_editor, index.name)  # what a cancelled build left, if anything
        schema_editor.add_index(model, index, **_concurrently(schema_editor))


def leaner_indexes(apps, schema_editor):
    for model_name, index in NEW_INDEXES:
        _build(schema_editor, apps.get_model("users", model_name), index)
    for model_name, _, column in OLD_INDEXED:
        model = apps.get_model("users", model_name)
        for name, index in _indexes(schema_editor, model).items():
            single = index["index"] and index["columns"] == [column]
            if single and not index["unique"] and not index["primary_key"] and name not in NEW_NAMES:
                _drop_index(schema_editor, name)


def former_indexes(apps, schema_editor):
    """Back to one index per column (without PostgreSQL's LIKE ones, which nothing read)."""
    for model_name, field, _ in OLD_INDEXED:
        model = apps.get_model("users", model_name)
        _build(schema_editor, model, models.Index(fields=[field], name=f"{model._meta.db_table}_{field}"))
    for _, index in NEW_INDEXES:
        _drop_index(schema_editor, index.name)


STATE_OPERATIONS = [
    migrations.AlterField(
        model_name="activitylog",
        name="delivery_id",
        field=models.PositiveBigIntegerField(blank=True, null=True),
    ),
    migrations.AlterField(
        model_name="activitylog",
        name="level",
        field=models.CharField(
            choices=[("info", "Info"), ("notice", "Notice"), ("warning", "Warning"), ("error", "Error")],
            default="info",
            max_length=8,
        ),
    ),
    migrations.AlterField(
        model_name="activitylog",
        name="source",
        field=models.CharField(
            choices=[
                ("webhook", "Webhook"),
                ("customerio", "Customer.io"),
                ("backfill", "Backfill"),
                ("admin", "Admin"),
            ],
            max_length=16,
        ),
    ),
    migrations.AlterField(
        model_name="usertag",
        name="user",
        field=models.ForeignKey(
            db_index=False,
            on_delete=django.db.models.deletion.CASCADE,
            related_name="user_tags",
            to=settings.AUTH_USER_MODEL,
        ),
    ),
    *(migrations.AddIndex(model_name=model_name, index=index) for model_name, index in NEW_INDEXES),
]


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("users", "0014_user_email_undeliverable"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=STATE_OPERATIONS,
            database_operations=[migrations.RunPython(leaner_indexes, former_indexes)],
        ),
    ]
