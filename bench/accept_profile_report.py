"""bench/accept_profile.py's first two tables: totals per request, and exclusive time per step."""

from accept_profile_clock import STEPS_AFTER_MIDDLEWARE, short_name
from accept_profile_columns import MINIMAL_MIDDLEWARE, Column


def print_totals(all_columns: list[Column], totals: dict, arguments) -> None:
    names = [column.name for column in all_columns]
    print(
        f"\n1. us per request, uninstrumented ({arguments.requests} requests a column in batches of {arguments.batch}"
        " taken in turn; median of the batches' means)"
    )
    print(f"{'':<40}" + "".join(f"{name:>11}" for name in names))
    floor = totals["floor/min"]
    for what, label in (("wall", "wall"), ("cpu", "CPU (this thread)")):
        print(f"{label:<40}" + "".join(f"{totals[name][what]:>11.0f}" for name in names))
        print(
            f"{label + ' beyond the minimal floor':<40}"
            + "".join(f"{totals[name][what] - floor[what]:>11.0f}" for name in names)
        )
    print(f"{'answers':<40}" + "".join(f"{answers(column):>11}" for column in all_columns))


def answers(column: Column) -> str:
    return "/".join(
        f"{count}x{status}" if len(column.statuses) > 1 else str(status)
        for status, count in sorted(column.statuses.items())
    )


def print_steps(all_columns: list[Column], steps: dict, leak: float) -> None:
    from django.conf import settings

    names = [column.name for column in all_columns]
    print(
        "\n2. exclusive us per request, instrumented (wall; each middleware's own work, hooks included, without what"
        f" it calls; an empty step reads {leak:.2f} us)"
    )
    print(f"{'':<40}" + "".join(f"{name:>11}" for name in names))
    order = [short_name(path) for path in settings.MIDDLEWARE] + STEPS_AFTER_MIDDLEWARE
    for step in order:
        cells = [steps[name].get(step) for name in names]
        if all(cell is None for cell in cells):
            continue
        print(f"{step:<40}" + "".join(f"{cell:>11.1f}" if cell is not None else f"{'-':>11}" for cell in cells))
    cut = [short_name(path) for path in settings.MIDDLEWARE if path not in MINIMAL_MIDDLEWARE]
    print(
        f"{'sum of the middleware beyond Security+Common':<40}"
        + "".join(f"{sum(steps[name].get(step, 0) for step in cut):>11.1f}" for name in names)
    )
    print(f"{'sum of every step':<40}" + "".join(f"{sum(steps[name].values()):>11.1f}" for name in names))
