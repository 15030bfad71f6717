from django.contrib.auth.signals import user_logged_in
from django.db.models.signals import post_init, post_save, pre_save
from django.dispatch import Signal, receiver

from .models import Role, User
from .services import outbox
from .services.roles import sync_role_group


@receiver(pre_save, sender=User)
def give_new_user_the_default_role(sender, instance, raw=False, **kwargs):
    if instance.role_id is None and not raw:
        instance.role = Role.get_default()


@receiver(post_save, sender=User)
def keep_role_group_in_step(sender, instance, created, raw=False, update_fields=None, **kwargs):
    if raw:
        return
    if update_fields is not None and "role" not in update_fields:
        return
    # User.from_db remembers the role a loaded user had, so an unrelated save costs no group queries.
    if created or instance.role_id != getattr(instance, "_synced_role_id", None):
        sync_role_group(instance)


@receiver(post_init, sender=User)
def remember_what_customerio_was_told(sender, instance, **kwargs):
    # A user loaded from the database (it has a pk): what a later save is compared with. A new user has nothing to
    # compare with: its first save is a creation, always sent.
    if instance.pk is not None:
        outbox.remember_state(instance)


@receiver(post_save, sender=User)
def new_address_is_deliverable_again(sender, instance, created, raw=False, **kwargs):
    # Customer.io's bounces were about the old address: a new one starts deliverable. Before the outbox's receiver
    # below, which forgets the email the user was loaded with.
    loaded_email = (getattr(instance, "_pushed_snapshot", None) or {}).get("email")
    if raw or created or not instance.email_undeliverable or not loaded_email or loaded_email == instance.email:
        return
    User.objects.filter(pk=instance.pk).update(
        email_undeliverable=False, email_undeliverable_at=None, email_undeliverable_reason=""
    )
    instance.email_undeliverable, instance.email_undeliverable_at, instance.email_undeliverable_reason = False, None, ""


@receiver(post_save, sender=User)
def tell_customerio_of_profile_change(sender, instance, created, raw=False, update_fields=None, **kwargs):
    if raw:
        return
    if update_fields is not None and not outbox.may_change_pushed_fields(update_fields):
        return  # e.g. a password or a bookkeeping flag: nothing Customer.io follows
    outbox.record_profile_change(instance, created=created, update_fields=update_fields)


@receiver(user_logged_in)
def track_login(sender, request, user, **kwargs):
    from .tracking import track_if_enabled

    track_if_enabled("event_login", user, "login")


# WP Fusion's hooks, as Django signals. Sent on transaction commit, never for a change that was rolled back.
tags_applied = Signal()
"""The user gained tags (a webhook, a backfill or `apply_tags`); `tags` is the list of `Tag` added. After commit."""

tags_removed = Signal()
"""Tags were taken off the user (a webhook, a backfill, `remove_tags`, `cio_sync_segments --prune`); `tags` is the
list of `Tag` removed. After commit."""

tags_modified = Signal()
"""After every webhook tag load and after any change above; `tags` is the list of every `Tag` the user holds now.
After commit."""

user_imported = Signal()
"""A webhook or an import created the user; `delivery` is the `WebhookDelivery`, or None from `cio_import_users`.
After commit."""

users_created_in_bulk = Signal()
"""Users were written in one statement, without `post_save` (an import step, a batch of queued adds); `users` is
their list. Sent once per batch, after commit and after each one's `user_imported`: a receiver that would run a
query per user does one for the batch here."""
