"""The hourly chart of requests and failures: counts per hour -> the shapes of an inline SVG.

Drawn on the server, with no script and nothing from another origin (the console's
Content-Security-Policy allows neither); colours come from console.css through class names,
since the policy refuses inline style attributes.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.store.console import Hour

WIDTH = 760
HEIGHT = 180
LEFT = 44  # room for the y axis' labels
RIGHT = 6
TOP = 10
BOTTOM = 22  # room for the dates
PLOT_WIDTH = WIDTH - LEFT - RIGHT
PLOT_HEIGHT = HEIGHT - TOP - BOTTOM


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    requests_y: float
    requests_height: float
    failures_y: float
    failures_height: float
    requests: int
    failures: int
    label: str  # the tooltip: "2024-05-14 13:00 UTC: 12 requests, 3 failed"


@dataclass(frozen=True)
class Tick:
    y: float
    label: str


@dataclass(frozen=True)
class Day:
    x: float
    label: str  # "05-14": where that UTC day begins


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    left: int
    right: int  # the plot's right edge
    top: int
    bottom: int  # the plot's baseline
    bars: list[Bar]
    ticks: list[Tick]
    days: list[Day]
    hours: int
    requests: int
    failures: int


def build(hours: list[Hour]) -> Chart:
    """Bars of the requests of each hour, the failures drawn over them in their own colour."""
    top = _nice(max((hour.requests for hour in hours), default=0))
    step = PLOT_WIDTH / max(len(hours), 1)
    baseline = TOP + PLOT_HEIGHT
    bars, days = [], []
    for index, hour in enumerate(hours):
        x = LEFT + index * step
        requests_height = hour.requests / top * PLOT_HEIGHT
        failures_height = hour.failures / top * PLOT_HEIGHT
        failed = f", {hour.failures} failed" if hour.failures else ""
        plural = "" if hour.requests == 1 else "s"
        bars.append(
            Bar(
                x=round(x + 0.5, 2),
                width=round(max(step - 1, 1), 2),
                requests_y=round(baseline - requests_height, 2),
                requests_height=round(requests_height, 2),
                failures_y=round(baseline - failures_height, 2),
                failures_height=round(failures_height, 2),
                requests=hour.requests,
                failures=hour.failures,
                label=(f"{hour.start:%Y-%m-%d %H:00} UTC: {hour.requests} request{plural}{failed}"),
            )
        )
        if hour.start.hour == 0:
            days.append(Day(round(x, 2), f"{hour.start:%m-%d}"))
    ticks = [
        Tick(round(baseline - fraction * PLOT_HEIGHT, 2), f"{top * fraction:g}")
        for fraction in (0, 0.5, 1)
    ]
    return Chart(
        width=WIDTH,
        height=HEIGHT,
        left=LEFT,
        right=LEFT + PLOT_WIDTH,
        top=TOP,
        bottom=baseline,
        bars=bars,
        ticks=ticks,
        days=days,
        hours=len(hours),
        requests=sum(hour.requests for hour in hours),
        failures=sum(hour.failures for hour in hours),
    )


def _nice(value: int) -> int:
    """The axis' top: the least of 2, 4, 10, 20, 40, 100... at or above `value` (even, so
    that its half is a whole number too)."""
    top = 2
    while top < value:
        top = top * 5 // 2 if str(top)[0] == "4" else top * 2
    return top
