"""The backfill benchmark's report (bench/backfill.py): each command's figures at each size side by side, the
targets, WP Fusion's per-user method beside them, the Return Password rows."""

from dataclasses import dataclass

APP_API_RATE = 10
RESYNC_TARGET = (180.0, 300.0, 1000)  # seconds, MB of peak RSS, people per App API call (at least)
IMPORT_FLOOR_TARGET = 1.1  # the import's wall time, at most this multiple of its App API calls at the limit
FLAT_RSS = 1.2  # the largest size's peak RSS within this multiple of the smallest's


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

    @property
    def floor_seconds(self) -> float:
        """Customer.io's own floor for the command: its App API calls at the limit."""
        return self.app_calls / APP_API_RATE


ROWS = {
    "sync": "cio_sync_segments",
    "import": "cio_import_users --segment 1",
    "resync": "cio_resync_tags --all (all to write)",
    "resync_again": "cio_resync_tags --all (again: none)",
    "pull": "cio_pull_meta --all (a tenth changed)",
    "push": "cio_push_users --all",
}


def report_sizes(results: dict[int, dict[str, Measured]], sizes: list[int]) -> None:
    """Each command's figures at each size, side by side, then the targets at the largest."""
    print()
    columns = f"{'wall':>8}{'App':>8}{'Track':>7}{'App/1k':>8}{'peak RSS':>10}"
    print(f"{'':<38}" + "".join(f"{f'{people:,} people':^44}" for people in sizes))
    print(f"{'command':<38}" + "".join(f"{columns}{'':>0}   " for _ in sizes) + ("RSS ratio" if len(sizes) > 1 else ""))
    for key, label in ROWS.items():
        cells = []
        for people in sizes:
            m = results[people][key]
            cells.append(
                f"{m.seconds:>7.1f}s{m.app_calls:>8,}{m.track_calls:>7,}{m.app_calls * 1000 / people:>8.2f}"
                f"{m.peak_rss_mb:>7.0f} MB   "
            )
        ratio = results[sizes[-1]][key].peak_rss_mb / results[sizes[0]][key].peak_rss_mb
        print(f"{label:<38}" + "".join(cells) + (f"{ratio:>8.2f} x" if len(sizes) > 1 else ""))
    floors = []
    for people in sizes:
        m = results[people]["import"]
        floors.append(f"{m.floor_seconds:>7.1f}s{f'{m.seconds / m.floor_seconds:.3f} x the floor':>36}")
    print(f"{'  import floor (App calls / 10 a s)':<38}" + "".join(floors))
    print()
    largest = sizes[-1]
    seconds, megabytes, per_call = RESYNC_TARGET
    for key in ("resync", "resync_again"):
        m = results[largest][key]
        met = m.seconds <= seconds and m.peak_rss_mb <= megabytes and m.app_calls * per_call <= largest
        print(
            f"Target, {ROWS[key]}: <= {seconds:.0f} s, <= {megabytes:.0f} MB, <= 1 App API call per {per_call:,} "
            f"people: {m.seconds:.1f} s, {m.peak_rss_mb:.0f} MB, {m.app_calls} calls: {'met' if met else 'NOT MET'}"
        )
    m = results[largest]["import"]
    ratio = m.seconds / m.floor_seconds
    print(
        f"Target, import within {IMPORT_FLOOR_TARGET} x Customer.io's floor ({m.app_calls:,} App API calls / "
        f"{APP_API_RATE} a s = {m.floor_seconds:.1f} s): {m.seconds:.1f} s, {ratio:.3f} x: "
        f"{'met' if ratio <= IMPORT_FLOOR_TARGET else 'NOT MET'}"
    )
    if len(sizes) > 1:
        growing = [
            ROWS[key]
            for key in ROWS
            if results[largest][key].peak_rss_mb > FLAT_RSS * results[sizes[0]][key].peak_rss_mb
        ]
        print(
            f"Target, peak RSS flat from {sizes[0]:,} to {largest:,} people (within {FLAT_RSS} x): "
            + ("met" if not growing else f"NOT MET for {'; '.join(growing)}")
        )


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


def report_per_user(results: dict[str, Measured], people: int) -> None:
    per_user = {
        "import": PerUser(2 * people, people, "2 App + 1 Track calls per contact"),
        "resync": PerUser(people, 0, "1 App call per user"),
        "resync_again": PerUser(people, 0, "1 App call per user"),
        "pull": PerUser(people, 0, "1 App call per user"),
        "push": PerUser(0, people, "1 Track call per user"),
    }
    print()
    print(f"Against WP Fusion's per-user method, {people:,} people (its App API calls at {APP_API_RATE}/s):")
    print(f"{'command':<38}{'calls':>10}{'per-user':>12}{'ratio':>10}{'wall':>9}{'per-user':>10}")
    for key, theirs in per_user.items():
        m = results[key]
        ratio = f"1/{theirs.calls / m.calls:,.0f}" if m.calls < theirs.calls else "1/1"
        print(f"{ROWS[key]:<38}{m.calls:>10,}{theirs.calls:>12,}{ratio:>10}{m.seconds:>8.1f}s{theirs.wall:>10}")
    print(
        "per-user method: "
        + "; ".join(f"{key} {theirs.how}" for key, theirs in per_user.items() if key != "resync_again")
    )


def report_return_password(
    results: dict[str, Measured], hashes: dict[str, tuple[str, float]], people: int, n_cores: int
) -> None:
    """`hashes`: for each Return Password row, the first hasher's description and one hash's measured seconds."""
    print()
    for description, seconds in hashes.values():
        print(f"One password hash ({description}): {seconds:.3f} s, measured")
    for key, (_, seconds) in hashes.items():
        bound = people * seconds / n_cores
        m = results[key]
        verdict = "met" if m.seconds <= 1.2 * bound else "NOT MET"
        print(
            f"{m.label}: {m.calls} calls ({m.app_calls}+{m.track_calls}), {m.seconds:.1f} s, peak RSS "
            f"{m.peak_rss_mb:.0f} MB; {people} generated passwords x {seconds:.3f} s / {n_cores} "
            f"cores = {bound:.1f} s of hashing ({m.seconds / bound:.2f} x; target <= 1.2 x: {verdict})"
        )
    import_ratio = results["return_"].seconds / results["return_pbkdf2"].seconds
    hash_ratio = hashes["return_"][1] / hashes["return_pbkdf2"][1]
    print(f"Argon2id against PBKDF2: the import took {import_ratio:.2f} x as long; one hash {hash_ratio:.2f} x.")
