"""The multiprocess files (webhooks.metrics.files): the counts of processes that ended stay in the totals, in one
archive file, while running processes keep their own files."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from webhooks.metrics import files

from .conftest import parse, value

COUNTING_PROCESS = textwrap.dedent(
    """
    import sys
    from prometheus_client import Counter, Histogram
    requests = Counter("webhook_requests", "x", ["action", "status"])
    duration = Histogram("webhook_request_duration_seconds", "x", ["action"], buckets=(0.1, 1.0))
    for _ in range(int(sys.argv[1])):
        requests.labels("test", "200").inc()
        duration.labels("test").observe(0.5)
    print("counted", flush=True)
    if sys.argv[2] == "stay":
        sys.stdin.read()
    """
)


def count(directory: Path, times: int, stay: bool = False) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-c", COUNTING_PROCESS, str(times), "stay" if stay else "exit"],
        env={**os.environ, files.ENVIRONMENT_VARIABLE: str(directory)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline().strip() == "counted"
    if not stay:
        assert process.wait(timeout=30) == 0
    return process


def totals(directory: Path) -> tuple[float, float, float]:
    registry = CollectorRegistry()
    files.LockedMultiProcessCollector(registry, str(directory))
    samples = parse(generate_latest(registry).decode())
    return (
        value(samples, "webhook_requests_total", action="test", status="200"),
        value(samples, "webhook_request_duration_seconds_bucket", action="test", le="1.0"),
        value(samples, "webhook_request_duration_seconds_sum", action="test"),
    )


def db_files(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.glob("*.db"))


@pytest.fixture
def directory(tmp_path):
    path = tmp_path / "metrics"
    path.mkdir()
    return path


def test_ended_processes_are_folded_into_the_archive_without_changing_the_totals(directory):
    for times in (1, 2, 3):
        count(directory, times)
    assert totals(directory) == (6, 6, 3.0)
    assert len(db_files(directory)) == 6

    assert files.fold_ended_processes(str(directory)) == 6

    assert db_files(directory) == ["counter_archive.db", "histogram_archive.db"]
    assert totals(directory) == (6, 6, 3.0)

    count(directory, 4)
    files.fold_ended_processes(str(directory))
    assert db_files(directory) == ["counter_archive.db", "histogram_archive.db"]
    assert totals(directory) == (10, 10, 5.0)


def test_a_running_process_keeps_its_files_until_it_ends(directory):
    count(directory, 2)
    running = count(directory, 5, stay=True)
    try:
        files.fold_ended_processes(str(directory))

        assert f"counter_{running.pid}.db" in db_files(directory)
        assert totals(directory) == (7, 7, 3.5)
    finally:
        running.communicate("", timeout=30)

    files.process_ended(str(directory), running.pid)  # as gunicorn's child_exit says so

    assert db_files(directory) == ["counter_archive.db", "histogram_archive.db"]
    assert totals(directory) == (7, 7, 3.5)


def test_files_of_no_process_are_left_alone(directory):
    (directory / "counter_archive.db").write_bytes(b"")
    (directory / "notes.db").write_bytes(b"x")

    assert files.fold_ended_processes(str(directory)) == 0
    assert sorted(path.name for path in directory.iterdir()) == [".lock", "counter_archive.db", "notes.db"]


def test_an_unreadable_file_of_an_ended_process_is_set_aside_and_the_rest_still_folds(tmp_path, caplog):
    """A process killed while creating its file leaves it empty. Folding runs in gunicorn's master (child_exit) and
    at every start: it must carry on, never raise, and keep scrapes readable."""
    count(tmp_path, 3)
    broken = tmp_path / "counter_999999.db"  # no such process
    broken.write_bytes(b"")
    assert files.fold_ended_processes(str(tmp_path)) == 2  # the counting process's counter and histogram files
    assert not broken.exists() and (tmp_path / "counter_999999.db.corrupt").exists()
    assert "Set aside the unreadable metrics file" in caplog.text
    assert totals(tmp_path) == (3, 3, 1.5)

    files.process_ended(str(tmp_path), 999998)  # nothing of it there: no error either
