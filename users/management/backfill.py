"""What the `cio_*` backfill commands share: their options, the progress display, the closing summary, the exit
status, and one-line messages for the failures an operator can do something about."""

import contextlib
import signal
import sys
import threading
import time

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from cio import errors as cio_errors
from users.services.backfills.common import BackfillError, BackfillResult, Progress

from ..services.outbox import from_customerio


class ProgressBar(Progress):
    """A tqdm bar per stage, for a terminal."""

    def __init__(self, stream):
        self.stream = stream
        self.bar = None

    def stage(self, label, total=None, unit=""):
        self.close()
        if unit:
            self.bar = tqdm(total=total, desc=label, unit=f" {unit}", file=self.stream, leave=True)
        else:
            tqdm.write(f"{label}…", file=self.stream)

    def advance(self, count=1):
        if self.bar is not None:
            self.bar.update(count)

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class ProgressLines(Progress):
    """A plain line every `interval` seconds and at the end of each stage, for logs and pipes."""

    def __init__(self, write, command: str, interval: float = 10.0):
        self.write = write
        self.command = command
        self.interval = interval
        self.label = None

    def stage(self, label, total=None, unit=""):
        self.close()
        self.label, self.total, self.unit, self.done = label, total, unit, 0
        self.started = self.last_line = time.monotonic()
        self.write(f"{self.command}: {label}…")

    def advance(self, count=1):
        self.done += count
        if time.monotonic() - self.last_line >= self.interval:
            self._line()

    def close(self):
        if self.label is not None and self.done:
            self._line()
        self.label = None

    def _line(self):
        self.last_line = time.monotonic()
        elapsed = self.last_line - self.started
        done = f"{self.done:,}" + (f"/{self.total:,}" if self.total else "") + (f" {self.unit}" if self.unit else "")
        share = f" ({100 * self.done // self.total}%)" if self.total else ""
        self.write(f"{self.command}: {self.label}: {done}{share}, {elapsed:.0f} s")


class BackfillCommand(BaseCommand):
    """A backfill command: `run()` does the work through a users.services.backfills function."""

    selects_users = True  # --all | --user EMAIL ...
    # Added to the message when a run stops half-way, when there is a way to go on.
    resume_hint = ""

    def add_arguments(self, parser):
        if self.selects_users:
            who = parser.add_mutually_exclusive_group(required=True)
            who.add_argument("--all", action="store_true", help="every user (staff and superusers excepted)")
            who.add_argument(
                "--user", action="append", dest="emails", metavar="EMAIL", help="this user; repeat for more"
            )
        parser.add_argument("--dry-run", action="store_true", help="read Customer.io, report, write nothing")

    def run(self, result: BackfillResult, progress: Progress, options: dict) -> None:
        raise NotImplementedError

    def handle(self, *args, **options):
        name = type(self).__module__.rsplit(".", 1)[-1]
        result = BackfillResult(command=name, dry_run=options["dry_run"])
        stream = options.get("stderr") or sys.stderr
        on_terminal = stream.isatty()
        progress = ProgressBar(stream) if on_terminal else ProgressLines(self.stderr.write, name)
        error = None
        # On a terminal, log lines are printed above the bar instead of through it.
        with _interrupt_on_sigterm(), logging_redirect_tqdm() if on_terminal else contextlib.nullcontext():
            try:
                # Whatever a backfill writes came from Customer.io: it is never sent back (users.services.outbox).
                with from_customerio():
                    self.run(result, progress, options)
            except KeyboardInterrupt:
                error = CommandError(f"Interrupted.{self.resume_hint}", returncode=130)
            except BackfillError as exc:
                error = CommandError(str(exc))
            except cio_errors.NotConfigured as exc:
                error = CommandError(f"Customer.io is not configured: {exc}.")
            except cio_errors.Unauthorized as exc:
                error = CommandError(f"Customer.io refused the credentials: {exc}.")
            except cio_errors.UpstreamError as exc:
                error = CommandError(f"Customer.io is not answering: {exc}.{self.resume_hint}")
            except cio_errors.CustomerIOError as exc:
                error = CommandError(f"Customer.io refused a request: {exc}.{self.resume_hint}")
            finally:
                progress.close()
        if error is None or not result.is_empty:
            self.stdout.write(f"{name}: {result.summary()}")
            for note in result.notes:
                self.stdout.write(f"  {note}")
        if error is not None:
            raise error
        if result.failed:
            raise CommandError(f"{result.failed} failed; Users → Activity logs in the admin says why.")


class _interrupt_on_sigterm:
    """SIGTERM (a deploy, a container stopping) ends a backfill like Ctrl-C does: cleanly, its position saved."""

    def __enter__(self):
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, signal.default_int_handler)

    def __exit__(self, *exc_info):
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)
