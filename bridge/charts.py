"""Small charts drawn by the bridge itself: PNG for chat (Pillow) and inline SVG for web pages.

One layout function places every bar, grid line and label; the PNG and the SVG renderer only
draw what it placed, so the chart posted in Slack and the one on the stats page look alike.
Nothing is fetched from anywhere: the PNG uses the font that ships inside Pillow, the SVG the
page's own font, and neither needs a script.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

from PIL import Image, ImageDraw, ImageFont

# Colours that stay apart for the common kinds of colour blindness (blue against orange).
BLUE = "#2f6fdf"
ORANGE = "#e07b22"
LIGHT_ORANGE = "#f3bf8c"
GREEN = "#2e9e6b"
GREY = "#8a8f98"
_INK = "#1f2328"
_MUTED = "#59636e"
_GRID = "#e4e7eb"
_AXIS = "#9aa3ad"

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
Measure = Callable[[str, int], float]


@dataclass(frozen=True, slots=True)
class Series:
    """One coloured part of the bars, with one value per x position."""

    label: str
    color: str
    values: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class BarChart:
    """Bars side by side at each x position; each bar stacks one or more series."""

    title: str
    labels: tuple[str, ...]
    bars: tuple[tuple[Series, ...], ...]
    # Shown across the plot when every value is 0.
    empty_note: str = "nothing in this period"

    @property
    def series(self) -> tuple[Series, ...]:
        """Every series, in legend order."""
        return tuple(s for stack in self.bars for s in stack)


@dataclass(frozen=True, slots=True)
class _Rect:
    x: float
    y: float
    w: float
    h: float
    color: str
    tip: str | None = None


@dataclass(frozen=True, slots=True)
class _Line:
    x1: float
    y1: float
    x2: float
    y2: float
    color: str


@dataclass(frozen=True, slots=True)
class _Text:
    x: float
    y: float  # the vertical centre of the text
    text: str
    size: int
    color: str
    anchor: str = "start"  # start, middle or end, as in SVG


@dataclass(frozen=True, slots=True)
class _Drawing:
    width: int
    height: int
    title: str
    rects: tuple[_Rect, ...]
    lines: tuple[_Line, ...]
    texts: tuple[_Text, ...]


def nice_ticks(top: int, intervals: int = 5) -> list[int]:
    """Axis ticks from 0 in steps of 1, 2 or 5 times a power of ten, reaching at least `top`."""
    step = 1
    while step * intervals < top:
        step = _next_step(step)
    last = max(step, math.ceil(top / step) * step)
    return list(range(0, last + 1, step))


def _next_step(step: int) -> int:
    """1, 2, 5, 10, 20, 50, 100, …: the step after `step`."""
    leading = int(str(step)[0])
    return step * 5 // 2 if leading == 2 else step * 2


def _layout(chart: BarChart, width: int, height: int, size: int, measure: Measure) -> _Drawing:
    """Place the title, legend, grid, bars and labels of a bar chart on a canvas."""
    rects: list[_Rect] = []
    lines: list[_Line] = []
    texts: list[_Text] = []
    pad = round(width * 0.025)
    title_size = round(size * 1.3)
    texts.append(_Text(pad, pad + title_size / 2, chart.title, title_size, _INK))

    row_y = _legend(chart, width, pad, title_size, size, measure, rects, texts)

    n = max(len(chart.labels), 1)
    heights = [
        sum(s.values[i] for s in stack) for i in range(len(chart.labels)) for stack in chart.bars
    ]
    ticks = nice_ticks(max(heights, default=0))
    top = ticks[-1]
    plot_top = row_y + size * 1.4
    plot_bottom = height - pad - size * 1.5
    plot_left = pad + max(measure(f"{t:,}", size) for t in ticks) + size * 0.6
    plot_right = width - pad
    span = plot_bottom - plot_top

    def y_of(value: float) -> float:
        return plot_bottom - value / top * span

    for tick in ticks:
        y = y_of(tick)
        lines.append(_Line(plot_left, y, plot_right, y, _AXIS if tick == 0 else _GRID))
        texts.append(_Text(plot_left - size * 0.4, y, f"{tick:,}", size, _MUTED, "end"))

    slot = (plot_right - plot_left) / n
    _bars(chart, plot_left, slot, y_of, rects)

    # Label every k-th position so that labels never overlap, always including the last one.
    widest = max((measure(label, size) for label in chart.labels), default=0.0)
    every = max(1, math.ceil((widest + size * 0.8) / slot))
    for i, label in enumerate(chart.labels):
        if (len(chart.labels) - 1 - i) % every == 0:
            x = plot_left + (i + 0.5) * slot
            texts.append(_Text(x, plot_bottom + size * 0.9, label, size, _MUTED, "middle"))
    if max(heights, default=0) == 0:
        texts.append(
            _Text(
                (plot_left + plot_right) / 2,
                plot_top + span / 2,
                chart.empty_note,
                size,
                _MUTED,
                "middle",
            )
        )
    return _Drawing(width, height, chart.title, tuple(rects), tuple(lines), tuple(texts))


def _legend(
    chart: BarChart,
    width: int,
    pad: int,
    title_size: int,
    size: int,
    measure: Measure,
    rects: list[_Rect],
    texts: list[_Text],
) -> float:
    """Flow the legend under the title, wrapping when a row is full; return the last row's
    vertical centre."""
    swatch = size * 0.9
    row_y = pad + title_size + size * 0.9
    x = float(pad)
    for series in chart.series:
        needed = swatch + size * 0.4 + measure(series.label, size)
        if x > pad and x + needed > width - pad:
            x, row_y = float(pad), row_y + size * 1.5
        rects.append(_Rect(x, row_y - swatch / 2, swatch, swatch, series.color))
        texts.append(_Text(x + swatch + size * 0.4, row_y, series.label, size, _MUTED))
        x += needed + size * 1.4
    return row_y


def _bars(
    chart: BarChart,
    plot_left: float,
    slot: float,
    y_of: Callable[[float], float],
    rects: list[_Rect],
) -> None:
    """Place each position's bars side by side in its slot, each bar a stack of series."""
    group = slot * (0.8 if len(chart.bars) > 1 else 0.7)
    bar = group / max(len(chart.bars), 1)
    inner = bar * (0.92 if len(chart.bars) > 1 and bar > 4 else 1.0)
    for i, label in enumerate(chart.labels):
        left = plot_left + i * slot + (slot - group) / 2
        for j, stack in enumerate(chart.bars):
            base = 0
            for series in stack:
                value = series.values[i]
                if value > 0:
                    y0, y1 = y_of(base + value), y_of(base)
                    rects.append(
                        _Rect(
                            left + j * bar,
                            y0,
                            inner,
                            y1 - y0,
                            series.color,
                            f"{label} {series.label}: {value:,}",
                        )
                    )
                base += value


# -- PNG ----------------------------------------------------------------------------------------


def _font(size: int) -> Font:
    """Pillow's built-in font at `size` pixels (its bitmap font where FreeType is missing)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow before 10.1, or built without FreeType
        return ImageFont.load_default()


def bar_png(chart: BarChart, *, width: int = 1200, height: int = 630) -> bytes:
    """The chart as a PNG; the default size stays readable in a chat's scaled-down preview."""
    fonts: dict[int, Font] = {}

    def font(size: int) -> Font:
        if size not in fonts:
            fonts[size] = _font(size)
        return fonts[size]

    def measure(text: str, size: int) -> float:
        return float(font(size).getlength(text))

    drawing = _layout(chart, width, height, round(height / 26), measure)
    image = Image.new("RGB", (width, height), "#ffffff")
    draw = ImageDraw.Draw(image)
    for line in drawing.lines:
        draw.line([(line.x1, line.y1), (line.x2, line.y2)], fill=line.color, width=2)
    for rect in drawing.rects:
        if rect.h >= 0.5:
            draw.rectangle(
                [rect.x, rect.y, rect.x + max(rect.w, 1.0) - 1, rect.y + rect.h - 1],
                fill=rect.color,
            )
    for text in drawing.texts:
        face = font(text.size)
        left, top, right, bottom = draw.textbbox((0, 0), text.text, font=face)
        shift = {"start": 0.0, "middle": (right - left) / 2, "end": float(right - left)}
        draw.text(
            (text.x - left - shift[text.anchor], text.y - (top + bottom) / 2),
            text.text,
            font=face,
            fill=text.color,
        )
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


# -- SVG ----------------------------------------------------------------------------------------


def _svg_measure(text: str, size: int) -> float:
    # An estimate: the page's sans-serif font averages a little over half an em per character.
    return len(text) * size * 0.56


def _svg(drawing: _Drawing) -> str:
    parts = [
        f'<svg class="chart" viewBox="0 0 {drawing.width} {drawing.height}" role="img"'
        f' aria-label="{escape(drawing.title)}">',
        f"<title>{escape(drawing.title)}</title>",
    ]
    for line in drawing.lines:
        parts.append(
            f'<line x1="{line.x1:.1f}" y1="{line.y1:.1f}" x2="{line.x2:.1f}" y2="{line.y2:.1f}"'
            f' stroke="{line.color}" stroke-width="1"/>'
        )
    for rect in drawing.rects:
        tip = f"<title>{escape(rect.tip)}</title>" if rect.tip else ""
        parts.append(
            f'<rect x="{rect.x:.1f}" y="{rect.y:.1f}" width="{max(rect.w, 0.5):.1f}"'
            f' height="{rect.h:.1f}" fill="{rect.color}">{tip}</rect>'
        )
    for text in drawing.texts:
        parts.append(
            f'<text x="{text.x:.1f}" y="{text.y:.1f}" font-size="{text.size}"'
            f' text-anchor="{text.anchor}" dominant-baseline="central" fill="{text.color}">'
            f"{escape(text.text)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def bar_svg(chart: BarChart, *, width: int = 800, height: int = 340) -> str:
    """The chart as an inline SVG element that scales to the width of its container."""
    return _svg(_layout(chart, width, height, 13, _svg_measure))


def hbar_svg(
    title: str, rows: Sequence[tuple[str, int]], *, color: str = BLUE, width: int = 800
) -> str:
    """Horizontal bars, one labelled row per (label, value), in the order given."""
    size = 13
    pad = round(width * 0.025)
    row = size * 2.0
    title_size = round(size * 1.3)
    height = round(pad * 2 + title_size + size + row * max(len(rows), 1))
    rects: list[_Rect] = []
    texts = [_Text(pad, pad + title_size / 2, title, title_size, _INK)]
    label_w = min(max((_svg_measure(label, size) for label, _ in rows), default=0.0), width * 0.4)
    left = pad + label_w + size * 0.8
    numbers_w = max((_svg_measure(f"{value:,}", size) for _, value in rows), default=0.0)
    right = width - pad - numbers_w - size * 0.6
    top_value = max((value for _, value in rows), default=0)
    y = float(pad + title_size + size)
    if not rows:
        texts.append(_Text(pad, y + row / 2, "none yet", size, _MUTED))
    for label, value in rows:
        centre = y + row / 2
        shown = label if _svg_measure(label, size) <= label_w else _fit(label, label_w, size)
        texts.append(_Text(left - size * 0.6, centre, shown, size, _INK, "end"))
        length = (right - left) * value / top_value if top_value else 0.0
        if length > 0:
            rects.append(
                _Rect(left, centre - row * 0.32, length, row * 0.64, color, f"{label}: {value:,}")
            )
        texts.append(_Text(left + length + size * 0.4, centre, f"{value:,}", size, _MUTED))
        y += row
    return _svg(_Drawing(width, height, title, tuple(rects), (), tuple(texts)))


def _fit(text: str, room: float, size: int) -> str:
    """The text shortened with an ellipsis to fit `room`."""
    keep = max(int(room / (size * 0.56)) - 1, 1)
    return text[:keep] + "…"
