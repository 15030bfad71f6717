from users.management.backfill import BackfillCommand
from users.services.backfills.user_import import import_users


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


class Command(BackfillCommand):
    help = (
        "Make every member of a Customer.io segment a user, under the add webhook's rules (username, role, "
        "password, Return Password, welcome email); existing users are updated, never duplicated. Resumable."
    )
    selects_users = False
    resume_hint = " The run's position is saved: continue it with --resume."

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument("--segment", type=int, required=True, metavar="ID", help="the Customer.io segment id")
        parser.add_argument(
            "--role",
            metavar="SLUG",
            help=(
                "role for the segment's members, as the add webhook's role=: new users get it and existing users "
                "are moved to it (a mapped role attribute wins; staff and superusers are never changed)"
            ),
        )
        parser.add_argument(
            "--send-notification",
            action="store_const",
            const=True,
            help="email new users a set-password link (as the webhook's send_notification=true)",
        )
        parser.add_argument("--limit", type=positive_int, metavar="N", help="import at most N members this time")
        parser.add_argument("--resume", action="store_true", help="continue the segment's unfinished import")

    def run(self, result, progress, options):
        run = import_users(
            result,
            segment_id=options["segment"],
            role=options["role"],
            send_notification=options["send_notification"],
            limit=options["limit"],
            resume=options["resume"],
            progress=progress,
        )
        if run.pk and not result.dry_run:
            result.notes.append(
                f"Run {run.pk} ({run.get_status_display().lower()}): {run.members_done} members so far — "
                f"{run.created} created, {run.updated} updated, {run.unchanged} unchanged, {run.skipped} skipped, "
                f"{run.failed} failed."
            )
            if run.status == run.Status.PAUSED:
                result.notes.append("Stopped at --limit: continue with --resume.")
