"""Bar charts drawn on the server as inline SVG (no script, so the content security policy
and a browser without JavaScript are both fine): the geometry here, the markup in
`desk/templates/desk/chart.html`. Each bar carries a <title> with its label and figure, so a
screen reader (and a hover) gives the number the bar stands for."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

WIDTH, HEIGHT = 960, 220  # the drawing's own units; the SVG scales to its box
TOP, BOTTOM = 14, 20  # room for the largest figure above and the first/last label below


@dataclass(frozen=True)
class Bar:
    label: str  # what the bar is (a day, a minute)
    figure: str  # its value as written (an exact amount, a count)
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class Chart:
    title: str
    bars: list[Bar]
    largest: str  # the figure of the tallest bar, written at the top
    first_label: str
    last_label: str
    width: int = WIDTH
    height: int = HEIGHT
    baseline: int = HEIGHT - BOTTOM


def bar_chart(title: str, values: Sequence[tuple[str, Decimal | int, str]]) -> Chart:
    """One bar per (label, value, figure) in order, heights in proportion to the values (the
    largest reaches the top; all zero draws none). `figure` is the value as the page writes
    it: amounts keep their scale (`20.00`)."""
    slot = WIDTH / max(len(values), 1)
    gap = slot * 0.15 if slot > 4 else 0.0
    tallest = max((Decimal(value) for _, value, _ in values), default=Decimal(0))
    room = HEIGHT - TOP - BOTTOM
    bars = []
    for index, (label, value, figure) in enumerate(values):
        height = float(Decimal(value) / tallest * room) if tallest > 0 else 0.0
        bars.append(Bar(label, figure, round(index * slot + gap / 2, 2),
                        round(HEIGHT - BOTTOM - height, 2), round(slot - gap, 2),
                        round(height, 2)))
    largest = next((figure for _, value, figure in values if Decimal(value) == tallest), "0")
    return Chart(title, bars, largest, values[0][0] if values else "",
                 values[-1][0] if values else "")
