"""Password hashers side by side: CPU time per hash, memory per hash, and what the machine's memory allows.

    .venv/bin/python bench/hashers.py        (after `make test` has created .venv)

Compares Django's PBKDF2 (1,000,000 iterations), Django's stock Argon2 parameters (100 MiB, 2 passes, 8 lanes) and
the site's sized Argon2 (ARGON2_MEMORY_KIB / ARGON2_TIME_COST / ARGON2_PARALLELISM from the environment or the
defaults). Each hash runs in a fresh process so its peak memory can be read; the median of several runs is shown.
"""

import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = 5

ONE_HASH = """
import os, resource, sys, time
sys.path.insert(0, {root!r})
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wpfusion_site.settings")
os.environ.setdefault("SECRET_KEY", "bench")
os.environ["ENV_FILE"] = os.devnull
import django
django.setup()
from django.contrib.auth.hashers import Argon2PasswordHasher, PBKDF2PasswordHasher
from users.hashers import SizedArgon2PasswordHasher
hasher = {{"pbkdf2": PBKDF2PasswordHasher, "argon2-django": Argon2PasswordHasher,
          "argon2-sized": SizedArgon2PasswordHasher}}[sys.argv[1]]()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.process_time(); wall = time.perf_counter()
hasher.encode("correct horse battery staple", hasher.salt())
print(time.process_time() - started, time.perf_counter() - wall, before,
      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def measure(name: str) -> tuple[float, float, float]:
    cpu, wall, memory = [], [], []
    for _ in range(RUNS):
        output = subprocess.run(
            [sys.executable, "-c", ONE_HASH.format(root=str(ROOT)), name], capture_output=True, text=True, check=True
        ).stdout.split()
        cpu.append(float(output[0]))
        wall.append(float(output[1]))
        memory.append((int(output[3]) - int(output[2])) / 1024)  # KB -> MB grown by the hash
    return statistics.median(cpu), statistics.median(wall), statistics.median(memory)


def main():
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("SECRET_KEY", "bench")
    os.environ["ENV_FILE"] = os.devnull
    from wpfusion_site import settings

    cores = len(os.sched_getaffinity(0))
    available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES") / 2**20
    sized = f"{settings.ARGON2_MEMORY_KIB // 1024} MiB, t={settings.ARGON2_TIME_COST}, p={settings.ARGON2_PARALLELISM}"
    rows = [
        ("pbkdf2", "PBKDF2-SHA256, 1,000,000 iterations"),
        ("argon2-django", "Argon2id, Django's stock (100 MiB, t=2, p=8)"),
        ("argon2-sized", f"Argon2id, this site's ({sized})"),
    ]
    print(f"One password hash, median of {RUNS}; {cores} cores, {available:,.0f} MiB memory available now")
    header = f"{'hasher':48} {'CPU s':>7} {'wall s':>7} {'peak MiB':>9}"
    print(f"{header} {'hashes/s (all cores)':>21} {'concurrent by memory':>21}")
    for name, label in rows:
        cpu, wall, memory = measure(name)
        concurrent = f"{int(available / memory):,}" if memory > 1 else "unbounded"
        print(f"{label:48} {cpu:7.3f} {wall:7.3f} {memory:9.0f} {cores / max(cpu, 1e-6):21.1f} {concurrent:>21}")


if __name__ == "__main__":
    main()
