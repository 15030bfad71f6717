"""CPU time spent by the benchmark's own processes, read from /proc (Linux): the machine is shared, so its overall
load says nothing about what the site spent.

snapshot() -> {pid: (kind, cpu seconds)} for this process (the emulator and the senders run in it), its
descendants (the web server, the queue workers, their password-hashing pools) and the PostgreSQL server's processes
(see _database), with the machine's busy time. spent(before, after) sums by kind what was used between two
snapshots, and tells what the rest of the machine used meanwhile."""

import os
from collections import defaultdict
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, user + system CPU seconds) of a live process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICK


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _kind(cmdline: str, parent_kind: str) -> str:
    if "spawn_main" in cmdline:
        return "password hashing"
    if "webhook_worker" in cmdline:
        return "queue workers"
    if "gunicorn" in cmdline or "runserver" in cmdline:
        return "web server"
    return parent_kind


def _database(stats: dict[int, tuple[int, float]]) -> set[int]:
    """The PostgreSQL server's processes: the postmaster and every child of it (the site's backends, and the WAL
    writer, checkpointer, background writer and autovacuum the site's writes keep busy), but the backends and
    autovacuum workers of the server's other databases (other runs' test databases on a shared machine)."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return set()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        own_backend = cursor.fetchone()[0]
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname IS NOT NULL AND datname <> current_database()")
        elsewhere = {row[0] for row in cursor.fetchall()}
    # Read now: the connection may be younger than `stats`.
    own = _stat(own_backend)
    if own is None:
        return set()  # the server runs elsewhere (another machine or container): its CPU is not this machine's
    postmaster = own[0]
    return ({postmaster} | {pid for pid, (ppid, _) in stats.items() if ppid == postmaster}) - elsewhere


def snapshot() -> dict[int, tuple[str, float]]:
    if not Path("/proc/self/stat").exists():
        return {}
    stats = {int(p.name): s for p in Path("/proc").iterdir() if p.name.isdigit() and (s := _stat(int(p.name)))}
    me = os.getpid()
    found = {me: ("bench and emulator", stats[me][1])}
    pending = [me]
    while pending:
        parent = pending.pop()
        for pid, (ppid, cpu) in stats.items():
            if ppid == parent and pid not in found:
                # The hashing pools' processes are spawned by multiprocessing; everything else is the site.
                kind = _kind(_cmdline(pid), found[parent][0])
                found[pid] = (kind, cpu)
                pending.append(pid)
    for pid in _database(stats):
        if pid in stats:
            found[pid] = ("database", stats[pid][1])
    found[MACHINE] = ("machine", _machine_busy())
    return found


MACHINE = -1  # the key of the machine's busy time, every process's together


def _machine_busy() -> float:
    """CPU seconds the whole machine has been busy (not idle, not waiting for I/O) since boot."""
    ticks = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / TICK


def spent(before: dict, after: dict) -> tuple[dict[str, float], float]:
    """CPU seconds by kind between two snapshots (a process that ended between them is not counted), and what the
    machine's other processes used meanwhile (other work on a shared machine slows the run's wall time)."""
    totals: dict[str, float] = defaultdict(float)
    for pid, (kind, cpu) in after.items():
        totals[kind] += cpu - (before[pid][1] if pid in before else 0.0)
    machine = totals.pop("machine", 0.0)
    return dict(totals), max(0.0, machine - sum(totals.values()))


def tree_seconds(root: int) -> float:
    """CPU seconds used so far by a process and its descendants (a gunicorn and its workers). No database
    connection needed, unlike snapshot()."""
    stats = {int(p.name): s for p in Path("/proc").iterdir() if p.name.isdigit() and (s := _stat(int(p.name)))}
    total, pending, seen = 0.0, [root], set()
    while pending:
        pid = pending.pop()
        if pid in seen or pid not in stats:
            continue
        seen.add(pid)
        total += stats[pid][1]
        pending.extend(child for child, (ppid, _) in stats.items() if ppid == pid)
    return total


def postgres_seconds() -> float:
    """CPU seconds used so far by every PostgreSQL server process on this machine (backends, WAL writer,
    checkpointer ...), found by name: another database's work on a shared server counts too."""
    total = 0.0
    for path in Path("/proc").iterdir():
        if path.name.isdigit() and _cmdline(int(path.name)).startswith("postgres") and (s := _stat(int(path.name))):
            total += s[1]
    return total
