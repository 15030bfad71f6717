from django.db import migrations


def forwards(apps, schema_editor):
    from users.seed import seed_roles

    seed_roles(apps.get_model("users", "Role"))


class Migration(migrations.Migration):
    dependencies = [("users", "0001_initial")]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
