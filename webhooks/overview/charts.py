"""Stacked bar charts drawn on the server: the geometry of an SVG chart (bars, axis, ticks, legend), which the
template webhooks/overview/chart.html writes out. No JavaScript and nothing fetched: the page works as it loads.

Accessible: the SVG has a <title> and a <desc>, every bar segment a <title> with its number (the browser's
tooltip), and the template puts the same numbers in a table under the chart.
"""

import math
from dataclasses import dataclass

WIDTH = 720
HEIGHT = 230
LEFT = 56  # room for the y axis' numbers
RIGHT = 12
TOP = 30  # room for the legend
BOTTOM = 40  # room for the x axis' labels and title
TICKS = 4

# Colours that tell the outcomes apart, also for the common kinds of colour blindness (Okabe & Ito's palette).
COLOURS = {
    "succeeded": "#009e73",
    "skipped": "#999999",
    "failed": "#d55e00",
    "invalid": "#e69f00",
    "waiting": "#0072b2",
    "calls": "#0072b2",
    "429s": "#d55e00",
    "refused": "#cc79a7",
    "answered 429": "#d55e00",
}


# Coordinates are handed to the template as text ("123.4"): a float there goes through number formatting, which
# costs more than the rest of the page's rendering.


@dataclass
class Segment:
    name: str
    value: int
    y: str
    height: str
    colour: str


@dataclass
class Bar:
    label: str  # the bucket, in words ("Mon 7 Dec, 14:00")
    x: str
    width: str
    total: int
    segments: list[Segment]


@dataclass
class Chart:
    id: str
    title: str
    description: str
    series: list[str]
    bars: list[Bar]
    y_ticks: list[tuple[str, str]]  # (y, number)
    x_labels: list[tuple[str, str]]  # (x of the bar's middle, short label)
    legend: list[tuple[int, str, str]]  # (x, name, colour)
    x_title: str
    y_title: str
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    top: int = TOP

    @property
    def right(self) -> int:
        return self.width - RIGHT

    @property
    def bottom(self) -> int:
        return self.height - BOTTOM

    @property
    def totals(self) -> dict[str, int]:
        totals = dict.fromkeys(self.series, 0)
        for bar in self.bars:
            for segment in bar.segments:
                totals[segment.name] += segment.value
        return totals

    @property
    def rows(self) -> list[tuple[str, list[int]]]:
        """The table under the chart: each bucket's numbers, series in order."""
        return [(bar.label, [segment.value for segment in bar.segments]) for bar in self.bars]


def nice_step(largest: int, ticks: int = TICKS) -> int:
    """A round step (1, 2 or 5 times a power of ten) such that `ticks` steps reach `largest`."""
    if largest <= ticks:
        return 1
    rough = largest / ticks
    power = 10 ** math.floor(math.log10(rough))
    for multiple in (1, 2, 5, 10):
        if multiple * power >= rough:
            return multiple * power
    return 10 * power  # unreachable: 10 * power >= rough always


def stacked_bars(
    chart_id: str,
    title: str,
    buckets: list[tuple[str, str, dict[str, int]]],
    *,
    series: list[str],
    x_title: str,
    y_title: str,
    label_every: int = 1,
    stacked: bool = True,
) -> Chart:
    """A chart of `buckets` — (short label, label in words, {series: count}) — oldest first. `stacked`: the series
    add up (deliveries by outcome); otherwise the later series are parts of the first (calls and their 429s) and are
    drawn over it from the axis."""
    totals = [_total(values, series, stacked) for _, _, values in buckets]
    step = nice_step(max(totals, default=0))
    top_value = step * max(1, math.ceil(max(totals, default=0) / step))
    plot_height = HEIGHT - TOP - BOTTOM
    scale = plot_height / top_value
    slot = (WIDTH - LEFT - RIGHT) / max(1, len(buckets))
    bar_width = max(1.0, slot * 0.8)
    bars, x_labels = [], []
    for index, ((short, words, values), total) in enumerate(zip(buckets, totals, strict=True)):
        x = LEFT + index * slot + (slot - bar_width) / 2
        segments, base = [], HEIGHT - BOTTOM
        for name in series:
            value = values.get(name, 0)
            height = value * scale
            y = base - height if stacked else HEIGHT - BOTTOM - height
            segments.append(Segment(name, value, _text(y), _text(height), COLOURS.get(name, "#555555")))
            if stacked:
                base -= height
        bars.append(Bar(words, round(x, 2), round(bar_width, 2), total, segments))
        if index % label_every == 0:
            x_labels.append((round(x + bar_width / 2, 2), short))
    y_ticks = [(round(HEIGHT - BOTTOM - value * scale, 2), f"{value:,}") for value in range(0, top_value + 1, step)]
    legend, x = [], LEFT
    for name in series:
        legend.append((x, name, COLOURS.get(name, "#555555")))
        x += 24 + 7 * len(name)
    kind = "stacked by" if stacked else "with"
    description = (
        f"Bar chart of {y_title} per {x_title}, {kind} {', '.join(series)}; {len(buckets)} bars, the highest "
        f"{max(totals, default=0):,}. The numbers are in the table below."
    )
    return Chart(chart_id, title, description, series, bars, y_ticks, x_labels, legend, x_title, y_title)


def _text(coordinate: float) -> str:
    return f"{coordinate:.1f}"


def _total(values: dict[str, int], series: list[str], stacked: bool) -> int:
    if stacked:
        return sum(values.get(name, 0) for name in series)
    return max((values.get(name, 0) for name in series), default=0)
