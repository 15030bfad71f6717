from users.management.backfill import BackfillCommand
from users.services.backfills.meta_pull import pull_meta


class Command(BackfillCommand):
    help = (
        "Copy Customer.io attributes onto users through the field mappings (as the update webhook does), "
        "100 users per App API call."
    )

    def run(self, result, progress, options):
        pull_meta(result, emails=options["emails"], progress=progress)
