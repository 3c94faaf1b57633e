"""Charts drawn on the server as SVG (no script, no inline style: the page's CSP allows neither).
Each chart has a title and description for screen readers, and the page prints the same numbers
as a table beside it."""

from __future__ import annotations

from markupsafe import Markup

from bot.console.filters import when
from bot.core.insights.notices import Timeline

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 12, 28


def _scale(value: int, top: int) -> float:
    usable = HEIGHT - TOP - BOTTOM
    return HEIGHT - BOTTOM - (value / top * usable if top else 0)


def _path(values: list[int], top: int) -> str:
    if not values:
        return ""
    step = (WIDTH - LEFT - RIGHT) / max(len(values), 1)
    points = [f"{LEFT:.1f},{_scale(0, top):.1f}"]
    for i, value in enumerate(values):
        points.append(f"{LEFT + step * (i + 1):.1f},{_scale(value, top):.1f}")
    return "M" + " L".join(points)


def timeline_svg(line: Timeline, *, recipients: int, delivered: int) -> Markup:
    """Acknowledgements since the send (cumulative), against the delivered total."""
    top = max(recipients, delivered, max(line.acknowledged, default=0), 1)
    last_ack = line.acknowledged[-1] if line.acknowledged else 0
    end = line.moment(len(line.acknowledged) - 1)
    description = (f"From {when(line.start)} to {when(end)}: {last_ack} of {delivered} delivered "
                   f"acknowledged ({recipients} recipients).")
    ticks = []
    for fraction in (0, 0.5, 1):
        value = round(top * fraction)
        y = _scale(value, top)
        ticks.append(Markup('<line class="grid" x1="{}" x2="{}" y1="{:.1f}" y2="{:.1f}"/>'
                            '<text class="axis" x="{}" y="{:.1f}" text-anchor="end">{}</text>').format(
            LEFT, WIDTH - RIGHT, y, y, LEFT - 6, y + 4, value))
    delivered_y = _scale(delivered, top)
    return Markup(
        '<svg class="chart" viewBox="0 0 {w} {h}" role="img" aria-labelledby="chart-title chart-desc">'
        '<title id="chart-title">Acknowledged since the send, against the delivered total</title>'
        '<desc id="chart-desc">{desc}</desc>{ticks}'
        '<line class="line delivered" x1="{left}" x2="{right}" y1="{dy:.1f}" y2="{dy:.1f}"/>'
        '<path class="line acknowledged" d="{acknowledged}"/>'
        '<text class="axis" x="{left}" y="{base}">{start}</text>'
        '<text class="axis" x="{right}" y="{base}" text-anchor="end">{end}</text></svg>').format(
        w=WIDTH, h=HEIGHT, desc=description, ticks=Markup("").join(ticks), dy=delivered_y,
        acknowledged=_path(line.acknowledged, top), left=LEFT, right=WIDTH - RIGHT, base=HEIGHT - 8,
        start=when(line.start), end=when(end))


def bar_svg(value: int, whole: int, *, label: str, css: str = "") -> Markup:
    """One horizontal bar (value of whole) for the funnel and the breakdown tables."""
    share = value / whole if whole else 0.0
    return Markup('<svg class="bar {css}" viewBox="0 0 100 8" preserveAspectRatio="none" role="img" '
                  'aria-label="{label}: {value} of {whole}"><rect class="track" width="100" height="8"/>'
                  '<rect class="fill" width="{w:.2f}" height="8"/></svg>').format(
        css=css, label=label, value=value, whole=whole, w=share * 100)
