from django.db import migrations


def forwards(apps, schema_editor):
    from settings_app.seed import seed_field_mappings

    seed_field_mappings(apps.get_model("settings_app", "FieldMapping"))


class Migration(migrations.Migration):
    dependencies = [("settings_app", "0001_initial")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
