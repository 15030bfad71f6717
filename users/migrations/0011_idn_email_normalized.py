"""Internationalised domains are compared in their ASCII form (users.emails.normalize_email): rewrite the lookup
column of users whose address has a non-ASCII domain. A user whose new form another user already holds (the same
mailbox, spelled both ways before this release) keeps the old form and is printed for the admin to merge."""

from django.db import migrations


def rewrite(apps, schema_editor):
    from users.emails import normalize_email

    User = apps.get_model("users", "User")
    for user in User.objects.only("pk", "email", "email_normalized").iterator(chunk_size=2000):
        if user.email.rpartition("@")[2].isascii():
            continue
        wanted = normalize_email(user.email)
        if wanted == user.email_normalized:
            continue
        if User.objects.filter(email_normalized=wanted).exclude(pk=user.pk).exists():
            print(f"\n  users: user {user.pk} shares a mailbox with another user ({wanted}); merge them by hand.")
            continue
        User.objects.filter(pk=user.pk).update(email_normalized=wanted)


class Migration(migrations.Migration):
    dependencies = [("users", "0010_contact_lock_read_claim")]

    operations = [migrations.RunPython(rewrite, migrations.RunPython.noop)]
