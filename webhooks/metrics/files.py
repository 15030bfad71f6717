"""The client's multiprocess mode: with PROMETHEUS_MULTIPROC_DIR set (before prometheus_client is first imported),
each process — every gunicorn worker, every `webhook_worker` — writes its counts to its own memory-mapped files
there (`counter_<pid>.db`, `histogram_<pid>.db`), and a scrape adds up every file.

A dead process's files must keep counting: deleting them would make the totals drop, which Prometheus reads as a
counter reset (and rate() as a burst). Neither may they pile up, one set per process that ever ran. So the files of
processes that have ended are folded into one archive file per type (`counter_archive.db`) — when gunicorn replaces
a worker (gunicorn.conf.py's child_exit), and when gunicorn or a `webhook_worker` starts (files left by processes
of an earlier run). The totals never go backwards, across restarts of either service too; the directory is emptied
only by whoever empties it on purpose (a reboot, for the systemd units' /run directory).

Folding and scraping take a lock on the directory (exclusive and shared): a scrape never sees a process's counts
both in its file and in the archive, or in neither. Counting itself takes no lock: each process writes only its
own files.

The directory is for the processes of one host (one PID namespace): whether a file's process has ended is read
from its PID. Stdlib and prometheus_client only: gunicorn.conf.py imports this before Django is set up.
"""

import contextlib
import fcntl
import glob
import logging
import os
from collections import defaultdict

from prometheus_client import multiprocess
from prometheus_client.mmap_dict import MmapedDict

ENVIRONMENT_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
ARCHIVE = "archive"
# Types whose values add up across processes (gauges are read from the database at scrape time instead).
ADDITIVE_TYPES = ("counter", "histogram")
LOCK_FILE = ".lock"
# A file no process can read (one cut short when its process was killed while creating it, or a full disk) is set
# aside under this suffix: scrapes and folds read `*.db` only.
SET_ASIDE = ".corrupt"

logger = logging.getLogger(__name__)


def directory() -> str | None:
    """The multiprocess directory of this process, or None when each process keeps its counts in memory."""
    return os.environ.get(ENVIRONMENT_VARIABLE) or None


@contextlib.contextmanager
def locked(path: str, *, exclusive: bool):
    with open(os.path.join(path, LOCK_FILE), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class LockedMultiProcessCollector(multiprocess.MultiProcessCollector):
    """The client's collector, reading the files under the directory's shared lock."""

    def collect(self):
        with locked(self._path, exclusive=False):
            return list(super().collect())


def process_ended(path: str, pid: int) -> None:
    """A process known to have ended (gunicorn's child_exit): its live gauges go, its counts join the archive.

    Never raises: it runs in gunicorn's master, where an exception stops the whole server, and in a worker's start;
    bookkeeping of metrics must not take the site down. A failure is logged and the files wait for the next fold."""
    try:
        multiprocess.mark_process_dead(pid, path)
        with locked(path, exclusive=True):
            _fold(path, lambda file_pid: file_pid == pid)
    except Exception:
        logger.exception("Could not fold the metrics of ended process %s in %s", pid, path)


def fold_ended_processes(path: str) -> int:
    """Fold the files of every process no longer running into the archive (at start). Returns how many; never
    raises (see process_ended)."""
    try:
        with locked(path, exclusive=True):
            return _fold(path, lambda file_pid: not _running(file_pid))
    except Exception:
        logger.exception("Could not fold the metrics of ended processes in %s", path)
        return 0


def _fold(path: str, ended) -> int:
    folded = 0
    for kind in ADDITIVE_TYPES:
        files = [
            name
            for name in glob.glob(os.path.join(path, f"{kind}_*.db"))
            if (pid := _pid_of(name)) is not None and ended(pid)
        ]
        if not files:
            continue
        totals: dict[str, float] = defaultdict(float)
        readable = []
        for name in files:
            try:
                values = list(MmapedDict.read_all_values_from_file(name))
            except Exception:
                logger.warning("Set aside the unreadable metrics file %s (its counts are lost)", name)
                os.replace(name, name + SET_ASIDE)
                continue
            readable.append(name)
            for key, value, _timestamp, _position in values:
                totals[key] += value
        files = readable
        archive = MmapedDict(os.path.join(path, f"{kind}_{ARCHIVE}.db"))
        try:
            for key, value in totals.items():
                archive.write_value(key, archive.read_value(key)[0] + value, 0.0)
        finally:
            archive.close()
        for name in files:
            os.remove(name)
        folded += len(files)
    return folded


def _pid_of(name: str) -> int | None:
    suffix = os.path.basename(name)[: -len(".db")].rpartition("_")[2]
    return int(suffix) if suffix.isdigit() else None


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: running
        return True
    return True
