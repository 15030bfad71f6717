from users.management.backfill import BackfillCommand
from users.services.backfills.tag_resync import resync_tags


class Command(BackfillCommand):
    help = (
        "Replace users' tags with their Customer.io segments, read from segment membership pages (a few App API "
        "calls per segment, not one per user). Tag signals go out for the users whose tags changed."
    )

    def run(self, result, progress, options):
        resync_tags(result, emails=options["emails"], progress=progress)
