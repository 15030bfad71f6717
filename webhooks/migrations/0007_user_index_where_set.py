import django.db.models.deletion
from django.conf import settings
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class AddIndexConcurrentlyOnPostgreSQL(AddIndexConcurrently):
    """CREATE INDEX CONCURRENTLY on PostgreSQL, so that accepted webhooks keep being written while a big deliveries
    table is indexed (a plain CREATE INDEX blocks every INSERT until it ends); a plain index on other databases."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        return migrations.AddIndex.database_forwards(self, app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            return super().database_backwards(app_label, schema_editor, from_state, to_state)
        return migrations.AddIndex.database_backwards(self, app_label, schema_editor, from_state, to_state)


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run inside a transaction

    dependencies = [
        ("webhooks", "0006_fewer_delivery_indexes"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        # The new index first, then the old one dropped: a user's deliveries stay indexed throughout.
        AddIndexConcurrentlyOnPostgreSQL(
            model_name="webhookdelivery",
            index=models.Index(condition=models.Q(("user__isnull", False)), fields=["user"], name="delivery_user"),
        ),
        migrations.AlterField(
            model_name="webhookdelivery",
            name="user",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="webhook_deliveries",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
    ]
