"""Backfill benchmark: the `cio_*` commands on 100,000 Customer.io people, next to WP Fusion's per-user method.

    .venv/bin/python bench/backfill.py         (after `make test` has created .venv; or `make bench-backfill`)

Starts the Customer.io emulator in this process (App API limit 10 requests/s, as Customer.io's) with 100,000 people
in 20 segments, and a site on a fresh SQLite database in a temporary folder (production settings: DEBUG off, the
site's sized Argon2id password hasher). Each command runs as its own `manage.py` process, so its wall time and peak
RSS are its own (peak RSS: the largest of the command's process and the password-hashing workers it starts). Customer.io
calls are counted from the emulator's request log.

WP Fusion's batch tools, as counted here: resync tags and pull meta one App API call per user; import two App API
calls and one Track call per contact; push one Track call per user. At 10 App API calls per second.

    1. cio_sync_segments                          the 20 segments become tags
    2. cio_import_users --segment 1               100,000 people, Return Password off: the site now has them all
    3. cio_resync_tags --all                      after every user's tags were deleted: all of them to write
    4. cio_resync_tags --all                      again: nothing to change
    5. cio_pull_meta --all                        10,000 people's attributes changed in Customer.io meanwhile
    6. cio_push_users --all
    7. cio_import_users --segment 21              500 new people, Return Password on with a field (Argon2id)
    8. cio_import_users --segment 22              the same with PBKDF2 first (1,000,000 iterations), for comparison

Figures, not pass/fail; the targets are printed beside them. BENCH_PEOPLE=10000 makes a quicker, smaller run;
BENCH_ONLY_RETURN_PASSWORD=1 runs steps 7 and 8 alone (on a site of no other people), and
BENCH_RETURN_PASSWORD_PEOPLE sets their size (500).
"""

import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cio_emulator import EmulatorServer  # noqa: E402

PYTHON = sys.executable
ONLY_RETURN_PASSWORD = os.environ.get("BENCH_ONLY_RETURN_PASSWORD", "") not in ("", "0")
PEOPLE = 0 if ONLY_RETURN_PASSWORD else int(os.environ.get("BENCH_PEOPLE", "100000"))  # fewer for a quick look
SEGMENTS = 20
EXTRA_SEGMENT_SHARE = 0.15  # each person is in "Everyone" and in each other segment with this probability
PULLED_CHANGES = max(1, PEOPLE // 10)
RETURN_PASSWORD_PEOPLE = int(os.environ.get("BENCH_RETURN_PASSWORD_PEOPLE", "500"))
APP_API_RATE = 10
# Production settings with PBKDF2 first: the hasher the site used before Argon2, for the comparison row.
PBKDF2_SETTINGS = """
from wpfusion_site.settings import *  # noqa: F403
PASSWORD_HASHERS = [h for h in PASSWORD_HASHERS if "Argon2" not in h]  # noqa: F405
"""


# A child's peak RSS on Linux includes the memory image it was forked from — here 100,000 emulated people. So each
# command is started by this small launcher, whose getrusage(RUSAGE_CHILDREN) then holds the command's own peak
# (and its password-hashing workers', which it waits for): argv = [file for the figure in KB, command...].
MEASURE_PEAK_RSS = (
    "import resource, subprocess, sys; status = subprocess.call(sys.argv[2:]); "
    "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); sys.exit(status)"
)


@dataclass
class Measured:
    label: str
    app_calls: int
    track_calls: int
    seconds: float
    peak_rss_mb: float
    summary: str

    @property
    def calls(self) -> int:
        return self.app_calls + self.track_calls


def people() -> dict:
    rng = random.Random(6)
    segments = [{"id": 1, "name": "Everyone", "type": "dynamic"}] + [
        {"id": n, "name": f"Segment {n}", "type": "manual" if n % 2 else "dynamic"} for n in range(2, SEGMENTS + 1)
    ]
    customers = [
        {
            "email": f"person{n}@example.com",
            "cio_id": f"c{n:06d}",
            "attributes": {"first_name": f"First{n}", "last_name": f"Last{n}", "plan": rng.choice(["gold", "silver"])},
            "segments": [1] + [s for s in range(2, SEGMENTS + 1) if rng.random() < EXTRA_SEGMENT_SHARE],
        }
        for n in range(PEOPLE)
    ]
    return {"segments": segments, "customers": customers}


class Site:
    """The site: a SQLite database in a temporary folder, and `manage.py` processes on it."""

    def __init__(self, folder: Path, emulator_url: str):
        self.database = folder / "bench.sqlite3"
        self.log = folder / "commands.log"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "wpfusion_site.settings",
            "ENV_FILE": os.devnull,
            "DEBUG": "off",
            "SECRET_KEY": "bench-only-secret-key",
            "DATABASE_URL": f"sqlite:///{self.database}",
            "LOG_LEVEL": "WARNING",
            "CUSTOMERIO_APP_API_URL": emulator_url,
            "CUSTOMERIO_TRACK_API_URL": emulator_url,
            "CUSTOMERIO_APP_API_KEY": "emulator-app-key",
            "CUSTOMERIO_SITE_ID": "emulator-site",
            "CUSTOMERIO_TRACK_API_KEY": "emulator-track-key",
            "CUSTOMERIO_APP_API_RATE": str(APP_API_RATE),
        }

    def manage(self, *args) -> tuple[int, float, float, str]:
        """Run a command; (exit status, seconds, peak RSS in MB, stdout)."""
        with open(self.log, "a") as log, tempfile.TemporaryFile("w+") as out:
            log.write(f"\n$ manage.py {' '.join(args)}\n")
            log.flush()
            rss_file = self.database.with_name("peak_rss")
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

    def sql(self, statement: str, *params) -> None:
        with sqlite3.connect(self.database) as connection:
            connection.execute(statement, params)

    def with_pbkdf2(self) -> "Site":
        """The same site, its commands run with PBKDF2 as the first hasher."""
        (self.database.parent / "pbkdf2_settings.py").write_text(PBKDF2_SETTINGS)
        other = Site.__new__(Site)
        other.database, other.log = self.database, self.log
        other.env = {
            **self.env,
            "DJANGO_SETTINGS_MODULE": "pbkdf2_settings",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(self.database.parent), str(ROOT)])),
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
    before = len(emulator.requests())
    status, seconds, rss, out = site.manage(*args)
    if status != 0:
        raise SystemExit(f"{label} failed with exit status {status}; see {site.log}\n{out}")
    calls = emulator.requests(since=before)
    app = sum(1 for call in calls if call["path"].startswith("/v1/"))
    summary = next((line for line in out.splitlines() if line.startswith("cio_")), "").split(": ", 1)[-1]
    print(f"  {label}: {summary}", flush=True)
    return Measured(label, app, len(calls) - app, seconds, rss, summary)


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def main():
    folder = Path(tempfile.mkdtemp(prefix="bench-backfill-"))
    emulator = EmulatorServer(port=0, rate_limit=APP_API_RATE)
    try:
        emulator.start()
        site = Site(folder, emulator.url)
        print(f"Seeding the emulator with {PEOPLE:,} people in {SEGMENTS} segments...", flush=True)
        emulator.state.load_fixture(people())
        status, _, _, _ = site.manage("migrate", "--no-input", "-v", "0")
        if status != 0:
            raise SystemExit(f"migrate failed; see {site.log}")
        pbkdf2_site = site.with_pbkdf2()
        hashes = {"return": site.one_hash_seconds(), "return_pbkdf2": pbkdf2_site.one_hash_seconds()}
        print(f"Running the commands (their progress goes to {site.log})...", flush=True)

        results = {}
        if not ONLY_RETURN_PASSWORD:
            run_bulk_commands(site, emulator, results)
        emulator.state.load_fixture(
            {
                "segments": [
                    {"id": SEGMENTS + 1, "name": "Return Password trial"},
                    {"id": SEGMENTS + 2, "name": "Return Password trial, PBKDF2"},
                ],
                "customers": [
                    {"email": f"{name}{n}@example.com", "cio_id": f"{name}{n:06d}", "segments": [segment]}
                    for name, segment in (("trial", SEGMENTS + 1), ("pbkdf", SEGMENTS + 2))
                    for n in range(RETURN_PASSWORD_PEOPLE)
                ],
            }
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
        results["return"] = measure(
            site,
            emulator,
            f"cio_import_users ({RETURN_PASSWORD_PEOPLE}, Return Password on)",
            "cio_import_users",
            "--segment",
            "21",
        )
        results["return_pbkdf2"] = measure(
            pbkdf2_site, emulator, "  the same, PBKDF2 first", "cio_import_users", "--segment", "22"
        )
        report(results, hashes)
    finally:
        emulator.stop()
        shutil.rmtree(folder, ignore_errors=True)


def run_bulk_commands(site: Site, emulator: EmulatorServer, results: dict) -> None:
    """Steps 1-6: the commands on the 100,000 people."""
    results["sync"] = measure(site, emulator, "cio_sync_segments", "cio_sync_segments")
    results["import"] = measure(site, emulator, f"cio_import_users ({PEOPLE:,})", "cio_import_users", "--segment", "1")
    site.sql("DELETE FROM users_usertag")
    results["resync"] = measure(site, emulator, "cio_resync_tags --all", "cio_resync_tags", "--all")
    results["resync_again"] = measure(site, emulator, "cio_resync_tags --all (again)", "cio_resync_tags", "--all")
    emulator.state.load_fixture(
        {
            "customers": [
                {"email": f"person{n}@example.com", "attributes": {"first_name": f"Renamed{n}", "plan": "bronze"}}
                for n in range(0, PEOPLE, PEOPLE // PULLED_CHANGES)
            ]
        }
    )
    results["pull"] = measure(site, emulator, "cio_pull_meta --all", "cio_pull_meta", "--all")
    results["push"] = measure(site, emulator, "cio_push_users --all", "cio_push_users", "--all")


@dataclass
class PerUser:
    """What WP Fusion's per-user method spends on the same work."""

    app_calls: int
    track_calls: int
    how: str

    @property
    def calls(self) -> int:
        return self.app_calls + self.track_calls

    @property
    def wall(self) -> str:
        """Its time at Customer.io's App API limit (Track calls not counted: they are not rate limited)."""
        if not self.app_calls:
            return "-"
        seconds = self.app_calls / APP_API_RATE
        return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds:.0f} s"


def report(results: dict[str, Measured], hashes: dict[str, tuple[str, float]]) -> None:
    """`hashes`: for each Return Password row, the first hasher's description and one hash's measured seconds."""
    n_cores = cores()
    hash_bounds = {key: RETURN_PASSWORD_PEOPLE * seconds / n_cores for key, (_, seconds) in hashes.items()}
    per_user = {
        "sync": PerUser(1, 0, "1 App call"),
        "import": PerUser(2 * PEOPLE, PEOPLE, "2 App + 1 Track calls per contact"),
        "resync": PerUser(PEOPLE, 0, "1 App call per user"),
        "resync_again": PerUser(PEOPLE, 0, "1 App call per user"),
        "pull": PerUser(PEOPLE, 0, "1 App call per user"),
        "push": PerUser(0, PEOPLE, "1 Track call per user"),
        "return": PerUser(2 * RETURN_PASSWORD_PEOPLE, RETURN_PASSWORD_PEOPLE, "2 App + 1 Track calls per contact"),
        "return_pbkdf2": PerUser(
            2 * RETURN_PASSWORD_PEOPLE, RETURN_PASSWORD_PEOPLE, "2 App + 1 Track calls per contact"
        ),
    }
    resync_target = (
        "calls <= 1/1000, <= 60 s, <= 250 MB",
        lambda m: m.calls * 1000 <= PEOPLE and m.seconds <= 60 and m.peak_rss_mb <= 250,
    )
    targets = {
        "import": ("calls <= 1/200", lambda m: m.calls * 200 <= per_user["import"].calls),
        "resync": resync_target,
        "resync_again": resync_target,
        "pull": ("calls <= 1/90", lambda m: m.calls * 90 <= PEOPLE),
        **{
            key: (
                f"wall <= 1.2 x {RETURN_PASSWORD_PEOPLE} hashes / cores = {1.2 * bound:.1f} s",
                lambda m, bound=bound: m.seconds <= 1.2 * bound,
            )
            for key, bound in hash_bounds.items()
        },
    }

    print()
    print(
        f"Backfills: {PEOPLE:,} Customer.io people in {SEGMENTS} segments; emulator App API limit {APP_API_RATE}/s; "
        f"SQLite; {n_cores} cores"
    )
    for description, seconds in hashes.values():
        print(f"One password hash ({description}): {seconds:.3f} s, measured")
    print()
    print(
        f"{'command':<43}{'calls':>8}{'App+Track':>14}{'per-user':>10}{'ratio':>9}{'wall':>9}{'per-user':>10}"
        f"{'peak RSS':>10}   target"
    )
    print(f"{'':<43}{'':>8}{'':>14}{'calls':>10}{'':>9}{'':>9}{'wall':>10}")
    for key, measured in results.items():
        theirs = per_user[key]
        ratio = f"1/{theirs.calls / measured.calls:,.0f}" if measured.calls < theirs.calls else "1/1"
        target, met = targets.get(key, ("", None))
        verdict = f"{target}: {'met' if met(measured) else 'NOT MET'}" if met else ""
        print(
            f"{measured.label:<43}{measured.calls:>8,}{f'{measured.app_calls:,}+{measured.track_calls:,}':>14}"
            f"{theirs.calls:>10,}{ratio:>9}{measured.seconds:>8.1f}s{theirs.wall:>10}"
            f"{measured.peak_rss_mb:>7.0f} MB   {verdict}"
        )
    print()
    print(
        "per-user method (WP Fusion): "
        + "; ".join(f"{key} {per_user[key].how}" for key in ("import", "resync", "pull", "push"))
    )
    print("per-user wall: its App API calls at 10/s (Track calls not counted).")
    for key, (description, seconds) in hashes.items():
        print(
            f"Return Password, {description}: {RETURN_PASSWORD_PEOPLE} generated passwords x {seconds:.3f} s / "
            f"{n_cores} cores = {hash_bounds[key]:.1f} s of hashing; the command took {results[key].seconds:.1f} s "
            f"in all ({results[key].seconds / hash_bounds[key]:.2f} x)."
        )
    import_ratio = results["return"].seconds / results["return_pbkdf2"].seconds
    hash_ratio = hashes["return"][1] / hashes["return_pbkdf2"][1]
    print(f"Argon2id against PBKDF2: the import took {import_ratio:.2f} x as long; one hash {hash_ratio:.2f} x.")


if __name__ == "__main__":
    main()
