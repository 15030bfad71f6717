"""Backfill benchmark: the `cio_*` commands on 100,000 Customer.io people (and on a million beside them), next to WP
Fusion's per-user method.

    .venv/bin/python bench/backfill.py                          (after `make test` has created .venv; or
                                                                 `make bench-backfill`): 100,000 people, SQLite
    BENCH_PEOPLE=1000000 .venv/bin/python bench/backfill.py     100,000 people, then 1,000,000, side by side
    BENCH_PEOPLE=1000000 .venv/bin/python bench/backfill.py --postgres      the same on PostgreSQL

For each size: the Customer.io emulator in this process (App API limit 10 requests/s, as Customer.io's) with the
people in 20 segments, and a site on a fresh database — SQLite in a temporary folder, or with --postgres an empty
PostgreSQL database `bench_million` on 127.0.0.1:5432 (BENCH_POSTGRES_URL for another server), dropped afterwards —
with production settings (DEBUG off, the site's sized Argon2id password hasher). Each command runs as its own
`manage.py` process, so its wall time and peak RSS are its own (peak RSS: the largest of the command's process and
the password-hashing workers it starts). Customer.io calls are counted from the emulator's request log (kept without
bodies: at a million people it would hold every batch sent).

WP Fusion's batch tools, as counted here: resync tags and pull meta one App API call per user; import two App API
calls and one Track call per contact; push one Track call per user. At 10 App API calls per second.

    1. cio_sync_segments                          the 20 segments become tags
    2. cio_import_users --segment 1               everyone, Return Password off: the site now has them all
    3. cio_resync_tags --all                      after every user's tags were deleted: all of them to write
    4. cio_resync_tags --all                      again: nothing to change
    5. cio_pull_meta --all                        a tenth of the people's attributes changed in Customer.io meanwhile
    6. cio_push_users --all
    7. cio_import_users --segment 21              500 new people, Return Password on with a field (Argon2id)
    8. cio_import_users --segment 22              the same with PBKDF2 first (1,000,000 iterations), for comparison

Steps 7 and 8 run once, on the last size's site. Figures, not pass/fail; the targets are printed beside them. The
import's floor is Customer.io's: its App API calls at 10 a second. BENCH_PEOPLE=10000 makes a quicker, smaller run;
BENCH_ONLY_RETURN_PASSWORD=1 runs steps 7 and 8 alone (on a site of no other people), and
BENCH_RETURN_PASSWORD_PEOPLE sets their size (500).
"""

import contextlib
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from backfill_report import APP_API_RATE, Measured, report_per_user, report_return_password, report_sizes  # noqa: E402

from cio_emulator import EmulatorServer  # noqa: E402

PYTHON = sys.executable
ONLY_RETURN_PASSWORD = os.environ.get("BENCH_ONLY_RETURN_PASSWORD", "") not in ("", "0")
PEOPLE = 0 if ONLY_RETURN_PASSWORD else int(os.environ.get("BENCH_PEOPLE", "100000"))  # fewer for a quick look
# Past 100,000 people, 100,000 runs first: the figures side by side show what grows with the number of people.
SIZES = [PEOPLE] if PEOPLE <= 100_000 else [100_000, PEOPLE]
POSTGRES = "--postgres" in sys.argv
POSTGRES_SERVER = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
POSTGRES_DATABASE = "bench_million"
SEGMENTS = 20
EXTRA_SEGMENT_SHARE = 0.15  # each person is in "Everyone" and in each other segment with this probability
RETURN_PASSWORD_PEOPLE = int(os.environ.get("BENCH_RETURN_PASSWORD_PEOPLE", "500"))
# Production settings with PBKDF2 first: the hasher the site used before Argon2, for the comparison row.
PBKDF2_SETTINGS = """
from wpfusion_site.settings import *  # noqa: F403
PASSWORD_HASHERS = [h for h in PASSWORD_HASHERS if "Argon2" not in h]  # noqa: F405
"""


# A child's peak RSS on Linux includes the memory image it was forked from — here the emulated people. So each
# command is started by this small launcher, whose getrusage(RUSAGE_CHILDREN) then holds the command's own peak
# (and its password-hashing workers', which it waits for): argv = [file for the figure in KB, command...].
MEASURE_PEAK_RSS = (
    "import resource, subprocess, sys; status = subprocess.call(sys.argv[2:]); "
    "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); sys.exit(status)"
)


def segments() -> list[dict]:
    return [{"id": 1, "name": "Everyone", "type": "dynamic"}] + [
        {"id": n, "name": f"Segment {n}", "type": "manual" if n % 2 else "dynamic"} for n in range(2, SEGMENTS + 1)
    ]


def customers(people: int):
    """The people, one at a time (a million never exist as one list here)."""
    rng = random.Random(6)
    for n in range(people):
        yield {
            "email": f"person{n}@example.com",
            "cio_id": f"c{n:07d}",
            "attributes": {"first_name": f"First{n}", "last_name": f"Last{n}", "plan": rng.choice(["gold", "silver"])},
            "segments": [1] + [s for s in range(2, SEGMENTS + 1) if rng.random() < EXTRA_SEGMENT_SHARE],
        }


class Site:
    """The site: a database (SQLite in a temporary folder, or PostgreSQL), and `manage.py` processes on it."""

    def __init__(self, folder: Path, database_url: str, emulator_url: str):
        self.folder = folder
        self.database_url = database_url
        self.log = folder / "commands.log"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "wpfusion_site.settings",
            "ENV_FILE": os.devnull,
            "DEBUG": "off",
            "SECRET_KEY": "bench-only-secret-key",
            "DATABASE_URL": database_url,
            "LOG_LEVEL": "WARNING",
            "CUSTOMERIO_APP_API_URL": emulator_url,
            "CUSTOMERIO_TRACK_API_URL": emulator_url,
            "CUSTOMERIO_APP_API_KEY": "emulator-app-key",
            "CUSTOMERIO_SITE_ID": "emulator-site",
            "CUSTOMERIO_TRACK_API_KEY": "emulator-track-key",
            "CUSTOMERIO_APP_API_RATE": str(APP_API_RATE),
        }

    @property
    def engine(self) -> str:
        return "PostgreSQL" if self.database_url.startswith("postgres") else "SQLite"

    def manage(self, *args) -> tuple[int, float, float, str]:
        """Run a command; (exit status, seconds, peak RSS in MB, stdout)."""
        with open(self.log, "a") as log, tempfile.TemporaryFile("w+") as out:
            log.write(f"\n$ manage.py {' '.join(args)}\n")
            log.flush()
            rss_file = self.folder / "peak_rss"
            started = time.monotonic()
            status = subprocess.call(
                [PYTHON, "-c", MEASURE_PEAK_RSS, str(rss_file), PYTHON, "manage.py", *args],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=log,
            )
            seconds = time.monotonic() - started
            out.seek(0)
            return status, seconds, int(rss_file.read_text()) / 1024, out.read()

    def sql(self, statement: str) -> None:
        if self.engine == "SQLite":
            with sqlite3.connect(self.database_url.removeprefix("sqlite:///")) as connection:
                connection.execute(statement)
            return
        import psycopg

        with psycopg.connect(self.database_url, autocommit=True) as connection:
            connection.execute(statement)

    def with_pbkdf2(self) -> "Site":
        """The same site, its commands run with PBKDF2 as the first hasher."""
        (self.folder / "pbkdf2_settings.py").write_text(PBKDF2_SETTINGS)
        other = Site.__new__(Site)
        other.folder, other.database_url, other.log = self.folder, self.database_url, self.log
        other.env = {
            **self.env,
            "DJANGO_SETTINGS_MODULE": "pbkdf2_settings",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(self.folder), str(ROOT)])),
        }
        return other

    def one_hash_seconds(self) -> tuple[str, float]:
        code = (
            "import django, statistics, time; django.setup(); "
            "from django.contrib.auth.hashers import get_hasher, make_password; "
            "times = [(lambda t: (make_password('x' * 24), time.perf_counter() - t)[1])(time.perf_counter()) "
            "for _ in range(7)]; "
            "hasher = get_hasher(); "
            "params = f'{hasher.iterations:,} iterations' if hasattr(hasher, 'iterations') else "
            "f'{hasher.memory_cost // 1024} MiB, t={hasher.time_cost}, p={hasher.parallelism}'; "
            "print(statistics.median(times), hasher.algorithm + ', ' + params)"
        )
        answer = subprocess.run(
            [PYTHON, "-c", code], cwd=ROOT, env=self.env, capture_output=True, text=True, check=True
        )
        seconds, description = answer.stdout.strip().split(" ", 1)
        return description, float(seconds)


def measure(site: Site, emulator: EmulatorServer, label: str, *args) -> Measured:
    emulator.state.clear_requests()
    status, seconds, rss, out = site.manage(*args)
    if status != 0:
        raise SystemExit(f"{label} failed with exit status {status}; see {site.log}\n{out}")
    app = emulator.state.count_requests(path_prefix="/v1/")
    total = emulator.state.count_requests()
    summary = next((line for line in out.splitlines() if line.startswith("cio_")), "").split(": ", 1)[-1]
    print(f"  {label}: {summary}", flush=True)
    return Measured(label, app, total - app, seconds, rss, summary)


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


@contextlib.contextmanager
def database(folder: Path):
    """A fresh database for one size: a SQLite file in `folder`, or the PostgreSQL one, created and dropped."""
    if not POSTGRES:
        yield f"sqlite:///{folder / 'bench.sqlite3'}"
        return
    from production_site import fresh_database

    with fresh_database(POSTGRES_SERVER, POSTGRES_DATABASE) as url:
        yield url


def main():
    results: dict[int, dict[str, Measured]] = {}
    hashes = {}
    engine = "PostgreSQL" if POSTGRES else "SQLite"
    for people in SIZES:
        last = people == SIZES[-1]
        folder = Path(tempfile.mkdtemp(prefix="bench-backfill-"))
        emulator = EmulatorServer(port=0, rate_limit=APP_API_RATE, log_bodies=False)
        try:
            emulator.start()
            print(f"Seeding the emulator with {people:,} people in {SEGMENTS} segments...", flush=True)
            emulator.state.load_fixture({"segments": segments()})
            emulator.state.load_customers(customers(people))
            with database(folder) as database_url:
                site = Site(folder, database_url, emulator.url)
                status, _, _, _ = site.manage("migrate", "--no-input", "-v", "0")
                if status != 0:
                    raise SystemExit(f"migrate failed; see {site.log}")
                print(f"Running the commands on {people:,} people (progress in {site.log})...", flush=True)
                results[people] = run_bulk_commands(site, emulator, people) if people else {}
                if last:
                    results[people].update(run_return_password(site, emulator, hashes))
        finally:
            emulator.stop()
            shutil.rmtree(folder, ignore_errors=True)
    print()
    print(
        f"Backfills: {', '.join(f'{n:,}' for n in SIZES)} Customer.io people in {SEGMENTS} segments; emulator App API "
        f"limit {APP_API_RATE}/s; {engine}; {cores()} cores"
    )
    if PEOPLE:
        report_sizes(results, SIZES)
        report_per_user(results[SIZES[-1]], SIZES[-1])
    report_return_password(results[SIZES[-1]], hashes, RETURN_PASSWORD_PEOPLE, cores())


def run_bulk_commands(site: Site, emulator: EmulatorServer, people: int) -> dict[str, Measured]:
    """Steps 1-6: the commands on everyone."""
    results = {"sync": measure(site, emulator, "cio_sync_segments", "cio_sync_segments")}
    results["import"] = measure(site, emulator, f"cio_import_users ({people:,})", "cio_import_users", "--segment", "1")
    site.sql("DELETE FROM users_usertag")
    results["resync"] = measure(site, emulator, "cio_resync_tags --all", "cio_resync_tags", "--all")
    results["resync_again"] = measure(site, emulator, "cio_resync_tags --all (again)", "cio_resync_tags", "--all")
    changed = max(1, people // 10)
    emulator.state.load_customers(
        {"email": f"person{n}@example.com", "attributes": {"first_name": f"Renamed{n}", "plan": "bronze"}}
        for n in range(0, people, people // changed)
    )
    results["pull"] = measure(site, emulator, f"cio_pull_meta --all ({changed:,} changed)", "cio_pull_meta", "--all")
    results["push"] = measure(site, emulator, "cio_push_users --all", "cio_push_users", "--all")
    return results


def run_return_password(site: Site, emulator: EmulatorServer, hashes: dict) -> dict[str, Measured]:
    """Steps 7 and 8: imports of new people with Return Password on, Argon2id first and PBKDF2 first."""
    pbkdf2_site = site.with_pbkdf2()
    hashes.update(return_=site.one_hash_seconds(), return_pbkdf2=pbkdf2_site.one_hash_seconds())
    emulator.state.load_fixture(
        {
            "segments": [
                {"id": SEGMENTS + 1, "name": "Return Password trial"},
                {"id": SEGMENTS + 2, "name": "Return Password trial, PBKDF2"},
            ]
        }
    )
    emulator.state.load_customers(
        {"email": f"{name}{n}@example.com", "cio_id": f"{name}{n:06d}", "segments": [segment]}
        for name, segment in (("trial", SEGMENTS + 1), ("pbkdf", SEGMENTS + 2))
        for n in range(RETURN_PASSWORD_PEOPLE)
    )
    # Through the model: on a site where no command ran yet the settings row does not exist until load().
    status, _, _, _ = site.manage(
        "shell",
        "-c",
        "from settings_app.models import WebhookSettings as S; S.load(); "
        "S.objects.update(return_password=True, return_password_field='site_password')",
    )
    if status != 0:
        raise SystemExit(f"setting Return Password failed; see {site.log}")
    label = f"cio_import_users ({RETURN_PASSWORD_PEOPLE}, Return Password on)"
    return {
        "return_": measure(site, emulator, label, "cio_import_users", "--segment", str(SEGMENTS + 1)),
        "return_pbkdf2": measure(
            pbkdf2_site, emulator, "  the same, PBKDF2 first", "cio_import_users", "--segment", str(SEGMENTS + 2)
        ),
    }


if __name__ == "__main__":
    main()
