"""A customer's Telegram formatting in the staff dialect (Slack's mrkdwn, see connectors.markup).

Pure. Telegram sends formatting as entities beside the text (MessageEntity: offsets and lengths
in UTF-16 code units, nested or overlapping); the staff dialect writes it into the text as
markers: `*bold*`, `_italic_`, `~strike~`, `` `code` ``, ```` ```pre``` ```` and `>` quotes.
A marker is written only where Slack honours it ("Formatting text for app surfaces": at a word
boundary, hugging its text, on one line), checked against the same parser the other surfaces
render with; a style that cannot be written so is left out, and no character is lost.

Slack has no underline and no spoiler, so those show as their plain words; mentions, URLs,
e-mail addresses, phone numbers and custom emoji are characters of the text already (a custom
emoji's are its fallback emoji). A `text_link` is written out as in plain text: "label (url)".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from connectors.markup import plain, style_count
from connectors.telegram_text import boundaries, link_insertions
from connectors.wire import int_or_none, opt_str

# MessageEntity types the staff dialect can show, and the style each becomes.
_KINDS = {
    "bold": "*",
    "italic": "_",
    "strikethrough": "~",
    "code": "`",
    "pre": "pre",
    "blockquote": "quote",
    "expandable_blockquote": "quote",
}
_INLINE = ("*", "_", "~")
_ORDER = (*_INLINE, "`")
_FENCE = "```"
# Characters times runs the one-by-one fitting of a line may cost (a few milliseconds' worth).
_GREEDY_BUDGET = 200_000


@dataclass(frozen=True, slots=True)
class _Cell:
    """One character of the plain text with the styles over it."""

    char: str
    styles: frozenset[str]


def shown_styled(message: Mapping[str, Any], *, edit: bool = False) -> str | None:
    """The text (else the caption) with its formatting; None when it has none to show.

    Takes the same field as `connectors.telegram_text.shown_text`.
    """
    for field, entities in (("text", "entities"), ("caption", "caption_entities")):
        value = opt_str(message, field)
        if value or (edit and value is not None):
            return styled_text(value, message.get(entities))
    return None


def styled_text(text: str, entities: Any) -> str | None:
    """The text in the staff dialect; None when no entity styles it."""
    cells = _cells(text, entities)
    if cells is None:
        return None
    pieces: list[str] = []
    line_start = True
    for is_pre, run in _pre_runs(cells):
        content = "".join(c.char for c in run)
        if is_pre:
            pieces.append(f"{_FENCE}{content}{_FENCE}")
            line_start = False
            continue
        lines = _split_lines(run)
        for index, line in enumerate(lines):
            if index:
                pieces.append("\n")
                line_start = True
            pieces.append(_line(line, quoted=line_start and _quoted(line)))
            line_start = False
    shown = "".join(pieces)
    plain_shown = "".join(c.char for c in cells)
    return None if shown == plain_shown else shown


def _cells(text: str, entities: Any) -> list[_Cell] | None:
    """The plain text (text_links written out) as cells; None when nothing styles it."""
    if not isinstance(entities, list):
        return None
    bounds = boundaries(text)
    spans: list[tuple[int, int, str]] = []
    for entity in entities:
        if not isinstance(entity, Mapping):
            continue
        style = _KINDS.get(str(entity.get("type")))
        offset, length = int_or_none(entity.get("offset")), int_or_none(entity.get("length"))
        if style is None or offset is None or length is None or length <= 0:
            continue
        # UTF-16 code units (MessageEntity); one ending inside a character spans nothing.
        start, end = bounds.get(offset), bounds.get(offset + length)
        if start is not None and end is not None:
            spans.append((start, end, style))
    if not spans:
        return None
    over: list[set[str]] = [set() for _ in text]
    for start, end, style in spans:
        for index in range(start, end):
            over[index].add(style)
    cells: list[_Cell] = []
    done = 0
    for at, added in link_insertions(text, entities):
        cells.extend(_Cell(text[i], frozenset(over[i])) for i in range(done, at))
        # The URL is styled as what it stands in: the styles on both sides of it.
        around = (over[at - 1] if at else set()) & (over[at] if at < len(text) else set())
        cells.extend(_Cell(char, frozenset(around - {"pre", "`"})) for char in added)
        done = at
    cells.extend(_Cell(text[i], frozenset(over[i])) for i in range(done, len(text)))
    return cells


def _pre_runs(cells: list[_Cell]) -> list[tuple[bool, list[_Cell]]]:
    """The cells cut into runs that are a fenced block (True) or not."""
    runs: list[tuple[bool, list[_Cell]]] = []
    for cell in cells:
        is_pre = "pre" in cell.styles
        if runs and runs[-1][0] == is_pre:
            runs[-1][1].append(cell)
        else:
            runs.append((is_pre, [cell]))
    fenced: list[tuple[bool, list[_Cell]]] = []
    for is_pre, run in runs:
        content = "".join(c.char for c in run)
        # A fence inside the block, or a backtick at its ends, would end or open it early.
        if not content.strip() or _FENCE in content or content[0] == "`" or content[-1] == "`":
            is_pre = False
        if fenced and not is_pre and not fenced[-1][0]:
            fenced[-1][1].extend(run)
        else:
            fenced.append((is_pre, run))
    return fenced


def _split_lines(run: list[_Cell]) -> list[list[_Cell]]:
    lines: list[list[_Cell]] = [[]]
    for cell in run:
        if cell.char == "\n":
            lines.append([])
        else:
            lines[-1].append(cell)
    return lines


def _quoted(line: list[_Cell]) -> bool:
    """Whether a whole line is quoted: every visible character of it in a blockquote."""
    seen = [c for c in line if not c.char.isspace()]
    return bool(seen) and all("quote" in c.styles for c in seen)


def _line(line: list[_Cell], *, quoted: bool) -> str:
    """One line with the markers of the runs Slack honours.

    Each run is first tried alone on its stretch of the line, then all that fit together on
    the whole line; only when those disturb each other (or the customer's own markers) are
    they taken one by one, longest first, each kept while the line still reads right.
    """
    bare = "".join(c.char for c in line)
    fitting = [run for run in _runs(line) if _fits_alone(line, run)]
    shown = _fitting(line, bare, fitting)
    if shown is None:
        shown = bare
        # Bounded: a line of many runs that all disturb each other is shown plain.
        if len(fitting) * (len(bare) + 1) <= _GREEDY_BUDGET:
            kept: list[tuple[str, int, int]] = []
            for run in sorted(fitting, key=lambda run: run[2] - run[1], reverse=True):
                candidate = _fitting(line, bare, [*kept, run])
                if candidate is not None:
                    kept, shown = [*kept, run], candidate
    return f"> {shown}" if quoted else shown


def _fits_alone(line: list[_Cell], run: tuple[str, int, int]) -> bool:
    """Whether one run's markers read right on its stretch with a character either side."""
    style, start, end = run
    left, right = max(start - 1, 0), min(end + 1, len(line))
    part = line[left:right]
    bare = "".join(c.char for c in part)
    return _fitting(part, bare, [(style, start - left, end - left)]) is not None


def _fitting(line: list[_Cell], bare: str, runs: list[tuple[str, int, int]]) -> str | None:
    """The line with `runs` written, when it reads as its plain text plus exactly the spans
    written (no marker shows, none is lost); else None."""
    if not runs:
        return bare
    candidate, pairs = _write(line, runs)
    if plain(candidate) == plain(bare) and style_count(candidate) == style_count(bare) + pairs:
        return candidate
    return None


def _runs(line: list[_Cell]) -> list[tuple[str, int, int]]:
    """(style, start, end) of each stretch of the line one style covers, ends trimmed of
    spaces; code stands alone (Slack styles nothing inside it)."""
    found: list[tuple[str, int, int]] = []
    for style in (*_INLINE, "`"):
        start: int | None = None
        last = -1
        for index, cell in enumerate(line):
            if cell.char.isspace():
                continue  # a space neither starts nor ends a run: markers go around words
            if style in cell.styles and (style == "`" or "`" not in cell.styles):
                start = index if start is None else start
                last = index
            elif start is not None:
                found.append((style, start, last + 1))
                start = None
        if start is not None:
            found.append((style, start, last + 1))
    return found


def _write(line: list[_Cell], runs: list[tuple[str, int, int]]) -> tuple[str, int]:
    """The line with `runs` written as markers, properly nested (a style open across another's
    end is closed and opened again), markers outside spaces; and how many pairs were written."""
    on: list[frozenset[str]] = [frozenset() for _ in line]
    ends: dict[tuple[str, int], int] = {}
    for style, start, end in runs:
        for index in range(start, end):
            on[index] = on[index] | {style}
            ends[(style, index)] = end
    out: list[str] = []
    stack: list[str] = []
    pending = ""
    pairs = 0
    for index, cell in enumerate(line):
        if cell.char.isspace() and not (stack and stack[-1] == "`" and "`" in on[index]):
            pending += cell.char
            continue
        want = on[index]
        while any(style not in want for style in stack):
            out.append(stack.pop())
        out.append(pending)
        pending = ""
        opening = sorted(want - set(stack), key=lambda s: (-ends[(s, index)], _ORDER.index(s)))
        for style in opening:
            out.append(style)
            stack.append(style)
            pairs += 1
        out.append(cell.char)
    out.extend(reversed(stack))
    out.append(pending)
    return "".join(out), pairs
