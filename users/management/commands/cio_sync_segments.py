from users.management.backfill import BackfillCommand
from users.services.backfills.segment_sync import sync_segments


class Command(BackfillCommand):
    help = (
        "Customer.io segments -> tags: new segments become tags, changed names and kinds are updated; tags whose "
        "segment is gone from Customer.io are reported and kept unless --prune. One App API call."
    )
    selects_users = False

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument(
            "--prune", action="store_true", help="delete tags whose segment is gone (users lose them too)"
        )

    def run(self, result, progress, options):
        sync_segments(result, prune=options["prune"], progress=progress)
