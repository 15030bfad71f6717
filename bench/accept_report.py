"""bench/accept.py's tables, printed once every measurement is over (so that no progress line falls among them)."""

import shutil
import statistics

from accept_open_loop import OPEN_LOOP_RATE
from accept_throughput import FULL_FLOOR, MINIMAL_FLOOR, WEB


def print_throughput(title: str, results: dict[str, list], arguments, targets: dict[str, float]) -> None:
    load = "wrk, 2 threads" if shutil.which("wrk") else "Python clients"
    print(f"\n{title}")
    print(
        f"gunicorn {WEB['WEB_CONCURRENCY']} processes x {WEB['GUNICORN_THREADS']} threads (gthread); "
        f"{load}, {arguments.connections} connections, {arguments.seconds:.0f} s after "
        f"{arguments.warm_up:.0f} s warm-up, {arguments.rounds} round(s) in turn: medians"
    )
    print(
        "minimal = the production settings with only Security and Common middleware; full = every production "
        "setting; ratios to each floor's requests/s (the median of the rounds')"
    )
    floors = [[figures["rate"] for figures in results.get(reference, [])] for reference in (MINIMAL_FLOOR, FULL_FLOOR)]
    print(
        f"{'endpoint':<40}{'req/s':>7}{'p50':>9}{'p99':>9}{'x minimal':>10}{'x full':>8}{'target':>16}"
        f"{'web CPU':>9}{'db CPU':>8}  answers"
    )
    for label, runs in results.items():
        rate = statistics.median(run["rate"] for run in runs)
        p50 = statistics.median(run["p50"] for run in runs)
        p99 = statistics.median(run["p99"] for run in runs)
        # The ratio of each round (the same conditions), then their median: to the minimal floor, to the full one.
        ratios = [
            statistics.median(run["rate"] / f for run, f in zip(runs, floor, strict=False)) if floor else None
            for floor in floors
        ]
        shown = [f"{ratio:.2f}" if ratio is not None else "-" for ratio in ratios]
        target = targets.get(label)
        if target is None or ratios[0] is None:
            verdict = ""
        else:
            verdict = f">= {target:g} {'met' if ratios[0] >= target else 'MISSED'}"
        not_2xx, total = sum(run["non_2xx"] for run in runs), sum(run["requests"] for run in runs)
        answers = f"{not_2xx} of {total} not 2xx" if not_2xx else "all 2xx"
        cpu = [_median_cpu(runs, kind) for kind in ("web", "database")]
        print(
            f"{label:<40}{rate:>7.0f}{p50:>7.1f}ms{p99:>7.1f}ms{shown[0]:>10}{shown[1]:>8}{verdict:>16}"
            f"{cpu[0]:>9}{cpu[1]:>8}  {answers}"
        )
    print("web CPU, db CPU: microseconds of CPU a request in the endpoint's gunicorn and in the PostgreSQL server")


def print_open_loop(results: dict[str, dict], seconds: float) -> None:
    print(
        f"\nOpen loop: `add&async=true` for new contacts at {OPEN_LOOP_RATE}/s for {seconds:.0f} s while a "
        f"webhook_worker drains the queue (Return Password on, field set); latency from each scheduled send time"
    )
    print(f"{'database':<12}{'accepted':>12}{'p50':>8}{'p99':>10}{'max':>10}{'over 4 s':>10}  the worker")
    for kind, r in results.items():
        drained = f"drained {r['drained']:.0f} s after the last send" if not r["waiting"] else f"{r['waiting']} left"
        print(
            f"{kind:<12}{r['accepted']:>5} of {r['sent']:<5}{r['p50']:>6.0f}ms{r['p99']:>8.0f}ms{r['max']:>8.0f}ms"
            f"{r['late']:>10}  {r['finished']} processed, {drained}"
        )


def _median_cpu(runs: list[dict], kind: str) -> str:
    values = [run["cpu_us"][kind] for run in runs if kind in run.get("cpu_us", {})]
    return f"{statistics.median(values):.0f}us" if values else "-"
