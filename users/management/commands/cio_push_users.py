from users.management.backfill import BackfillCommand
from users.services.backfills.user_push import push_users


class Command(BackfillCommand):
    help = (
        "Send users' mapped fields to Customer.io in /api/v2/batch requests, naming each person by their "
        "Customer.io id when known (so a changed email updates the right person), else by email. Never a password."
    )

    def run(self, result, progress, options):
        push_users(result, emails=options["emails"], progress=progress)
