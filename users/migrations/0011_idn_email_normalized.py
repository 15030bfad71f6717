"""Internationalised domains are compared in their ASCII form (users.emails.normalize_email): rewrite the lookup
column of users whose address has a non-ASCII domain, and back again when unapplied.

The rules are copied here, not imported: a migration must keep doing what it did when it was written. A user whose
new form another user already holds (one mailbox, spelled both ways before this release) keeps the old form; an
activity line names both, for the admin to merge them (until then the second spelling's webhooks find the first
user, and saving the second user in the admin says its email is taken)."""

import unicodedata

import idna
from django.db import migrations

# Any character outside printable ASCII after the "@": SQLite and PostgreSQL read this pattern alike.
NON_ASCII_DOMAIN = r"@.*[^ -~]"


def _before(email: str) -> str:
    return unicodedata.normalize("NFC", (email or "").strip()).lower()


def _after(email: str) -> str:
    normalized = _before(email)
    local, at, domain = normalized.rpartition("@")
    if not at or domain.isascii():
        return normalized
    try:
        ascii_domain = idna.encode(domain, uts46=True, transitional=False).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        return normalized
    return normalized if len(local) + 1 + len(ascii_domain) > 254 else f"{local}@{ascii_domain}"


def _rewrite(apps, rule):
    User = apps.get_model("users", "User")
    ActivityLog = apps.get_model("users", "ActivityLog")
    candidates = User.objects.filter(email__regex=NON_ASCII_DOMAIN).only("pk", "email", "email_normalized")
    for user in candidates.iterator(chunk_size=2000):
        wanted = rule(user.email)
        if wanted == user.email_normalized:
            continue
        holder = User.objects.filter(email_normalized=wanted).exclude(pk=user.pk).first()
        if holder is not None:
            ActivityLog.objects.create(
                level="warning",
                source="admin",
                message=(
                    f"Users {holder.pk} ({holder.email}) and {user.pk} ({user.email}) are one mailbox spelled two "
                    "ways: merge them (the second keeps its old lookup form until then)."
                ),
                context={"users": [holder.pk, user.pk]},
            )
            continue
        User.objects.filter(pk=user.pk).update(email_normalized=wanted)


def forwards(apps, schema_editor):
    _rewrite(apps, _after)


def backwards(apps, schema_editor):
    _rewrite(apps, _before)


class Migration(migrations.Migration):
    dependencies = [("users", "0010_contact_lock_read_claim")]

    operations = [migrations.RunPython(forwards, backwards)]
