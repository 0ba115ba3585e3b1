"""What staff wrote, in each messenger's own formatting.

Staff text reaches the connectors in Slack's mrkdwn, already freed of Slack's link and mention
markup (connectors.slack_text): `*bold*`, `_italic_`, `~strike~`, `` `code` ``, fenced
```` ``` ```` blocks and `>` quotes ("Formatting text for app surfaces",
https://api.slack.com/reference/surfaces/formatting). A marker counts only as Slack counts it:
at a word boundary, hugging its text, on one line, so `snake_case_names`, `5 * 3` and
`a*b*c` stay as typed.

- Telegram shows formatting through `parse_mode=HTML`, with only its tags (`b`, `i`, `s`,
  `code`, `pre`, `blockquote`) and `&lt; &gt; &amp;` escaped (Bot API, "HTML style").
- WhatsApp's own markers are the same (`*bold*`, `_italic_`, `~strike~`, `` ` ``,
  ```` ``` ````, `>`), so its text goes as written.
- Messenger and SMS show no formatting: the markers go, the words and quotes stay.

A message too long for one send is cut where the reader sees text, and each part carries its
own markup: a style or a quote cut in two ends in one part and opens again in the next, so no
tag is cut in half and no marker is left unpaired.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass

from bridge.textsplit import first_piece
from connectors.wire import utf16_len

# A fenced block: its content is literal, newlines and all.
_FENCE = re.compile(r"```\n?(.*?)\n?```", re.S)
_CODE = re.compile(r"`([^`\n]+)`")
# Slack's rule: the opening marker follows a non-word character (or the start) and hugs the
# text; the closing one hugs the text and comes before a non-word character (or the end).
# Another style's marker may follow an opening one: `*_bold italic_*`.
_STYLE = re.compile(
    r"(?<![\w*_~])([*_~])(?=[^\s])(?!\1)([^\n]*?[^\s])\1(?![\w*_~])",
)
_QUOTE = re.compile(r"^>[ \t]?(.*)$")
_TAGS = {"*": "b", "_": "i", "~": "s"}
_BLOCK_BREAK = re.compile(r"<br>(<(?:blockquote|pre)>)|(?<=</blockquote>)<br>|(?<=</pre>)<br>")
# A URL as readers see it (Slack sends links as `<url>`, read into "label (url)"): its `_`, `*`
# and `~` are part of the address, never markers.
# It ends before a parenthesis: links are read as "label (url)".
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s<>`()]*[^\s<>`.,;:!?()\[\]'\"]")
# While styles are read, a URL's markers stand in as noncharacters (Unicode's own internal-use
# code points, which no message carries), put back in the text spans after.
_HIDE = str.maketrans({"*": "\ufdd0", "_": "\ufdd1", "~": "\ufdd2"})
_SHOW = str.maketrans({"\ufdd0": "*", "\ufdd1": "_", "\ufdd2": "~"})


@dataclass(frozen=True, slots=True)
class _Span:
    """A piece of text: plain words, a style around more pieces, code, or a fenced block."""

    kind: str  # "text", "b", "i", "s", "code", "pre", "quote"
    text: str = ""
    children: tuple[_Span, ...] = ()


def telegram_html(text: str) -> str:
    """mrkdwn as Telegram's HTML parse mode: its tags, everything else escaped."""
    return "".join(_html(span) for span in _parse(text))


def plain(text: str) -> str:
    """mrkdwn without its markers, for messengers that show no formatting."""
    return "".join(_plain(span) for span in _parse(text))


def matrix_html(text: str) -> str:
    """mrkdwn as a Matrix `formatted_body`: b, i, s, code, pre and blockquote tags (all in the
    spec's list of allowed tags), everything else escaped, line breaks as `<br>` outside
    `pre` (HTML collapses a bare newline)."""
    shown = "".join(_html(span, br=True) for span in _parse(text))
    # A quote or a block already stands on its own lines: the line break beside it would
    # show as an empty line.
    return _BLOCK_BREAK.sub(r"\1", shown)


def style_count(text: str) -> int:
    """How many styled spans (bold, italic, strike, code) mrkdwn shows in one line of text."""
    return sum(_count(span) for span in _inline(text))


def telegram_parts(text: str, limit: int) -> list[str]:
    """mrkdwn as Telegram HTML messages, each showing at most `limit` UTF-16 units of text."""
    # Telegram's 4096 characters are counted after entity parsing (Bot API, sendMessage).
    return _parts(_parse(text), limit, _html, _shown)


def whatsapp_parts(text: str, limit: int) -> list[str]:
    """mrkdwn as WhatsApp bodies of at most `limit` UTF-16 units, each with its markers paired."""
    if utf16_len(text) <= limit:
        return [text]  # as written
    return _parts(_parse(text), limit, _mrkdwn, _mrkdwn)


def _parts(
    spans: list[_Span], limit: int, render: Callable[[_Span], str], measure: Callable[[_Span], str]
) -> list[str]:
    """The spans cut at what the reader sees into parts whose `measure` fits `limit`."""
    shown = "".join(_shown(span) for span in spans)
    parts: list[str] = []
    start = 0
    while start < len(shown):

        def fits(piece: str, start: int = start) -> bool:
            sliced = _slice(spans, start, start + len(piece))
            return utf16_len("".join(measure(span) for span in sliced)) <= limit

        end = start + first_piece(shown[start:], fits)
        # The line break or space at the cut ends no part (platforms trim it anyway), and a
        # part of only white space is refused by every platform.
        words = shown[start:end] if end == len(shown) else shown[start:end].rstrip()
        if words.strip():
            kept = _slice(spans, start, start + len(words))
            parts.append("".join(render(span) for span in kept))
        start = end
    return parts


def _shown(span: _Span) -> str:
    """The text a reader sees of a span, without markup."""
    if span.kind in ("text", "code", "pre"):
        return span.text
    return "".join(_shown(child) for child in span.children)


def _slice(spans: tuple[_Span, ...] | list[_Span], start: int, end: int) -> list[_Span]:
    """The spans that show `shown[start:end]`, styles and quotes kept around their part."""
    out: list[_Span] = []
    pos = 0
    for span in spans:
        size = len(_shown(span))
        low, high = max(start - pos, 0), min(end - pos, size)
        if low < high and span.kind in ("text", "code", "pre"):
            out.append(_Span(span.kind, span.text[low:high]))
        elif low < high:
            out.append(_Span(span.kind, children=tuple(_slice(span.children, low, high))))
        pos += size
        if pos >= end:
            break
    return out


def _parse(text: str) -> list[_Span]:
    spans: list[_Span] = []
    pos = 0
    for match in _FENCE.finditer(text):
        spans.extend(_blocks(text[pos : match.start()]))
        spans.append(_Span("pre", match.group(1)))
        pos = match.end()
    spans.extend(_blocks(text[pos:]))
    return spans


def _blocks(text: str) -> list[_Span]:
    """Runs of `>` lines become quotes; the other lines are inline text."""
    spans: list[_Span] = []
    quoted: list[str] = []
    plain_lines: list[str] = []

    def flush_quote() -> None:
        if quoted:
            spans.append(_Span("quote", children=tuple(_inline("\n".join(quoted)))))
            quoted.clear()

    def flush_plain() -> None:
        if plain_lines:
            spans.extend(_inline("".join(plain_lines)))
            plain_lines.clear()

    ended = False  # whether the last quoted line ended with a line break
    for line in text.splitlines(keepends=True):
        body = line.rstrip("\n")
        match = _QUOTE.match(body)
        if match is not None:
            flush_plain()
            quoted.append(match.group(1))
            ended = line.endswith("\n")
            continue
        if quoted:
            flush_quote()
            # The line break after the last quoted line belongs to the text after it.
            plain_lines.append("\n" if ended else "")
            ended = False
        plain_lines.append(line)
    flush_quote()
    if ended:
        plain_lines.append("\n")
    flush_plain()
    return spans


def _inline(text: str) -> list[_Span]:
    spans: list[_Span] = []
    pos = 0
    for match in _CODE.finditer(text):
        spans.extend(_styled(text[pos : match.start()]))
        spans.append(_Span("code", match.group(1)))
        pos = match.end()
    spans.extend(_styled(text[pos:]))
    return spans


def _styled(text: str) -> list[_Span]:
    return _styles(_hide_urls(text))


def _hide_urls(text: str) -> str:
    """The text with the markers inside its URLs hidden from the style rules."""
    out: list[str] = []
    pos = 0
    for match in _URL.finditer(text):
        out.append(text[pos : match.start()])
        url = match.group(0)
        core = url.rstrip("*_~")
        tail = url[len(core) :]
        # A marker right after a URL closes a style when one opened before it on its line
        # (`_see https://x.y/a_`); otherwise it ends the address (`https://x.y/_a_`).
        line = "".join(out).rpartition("\n")[2]
        opened = tail and re.search(rf"(?<![\w*_~]){re.escape(tail[-1])}(?=\S)", line)
        out.append(core.translate(_HIDE) + (tail if opened else tail.translate(_HIDE)))
        pos = match.end()
    out.append(text[pos:])
    return "".join(out)


def _styles(text: str) -> list[_Span]:
    spans: list[_Span] = []
    pos = 0
    for match in _STYLE.finditer(text):
        if match.start() > pos:
            spans.append(_Span("text", text[pos : match.start()].translate(_SHOW)))
        inner = tuple(_styles(match.group(2)))
        spans.append(_Span(_TAGS[match.group(1)], children=inner))
        pos = match.end()
    if pos < len(text):
        spans.append(_Span("text", text[pos:].translate(_SHOW)))
    return spans


def _html(span: _Span, *, br: bool = False) -> str:
    if span.kind in ("text", "code"):
        shown = html.escape(span.text, quote=False)
        shown = shown.replace("\n", "<br>") if br else shown
        return shown if span.kind == "text" else f"<code>{shown}</code>"
    if span.kind == "pre":
        return f"<pre>{html.escape(span.text, quote=False)}</pre>"
    tag = "blockquote" if span.kind == "quote" else span.kind
    inner = "".join(_html(child, br=br) for child in span.children)
    return f"<{tag}>{inner}</{tag}>"


def _count(span: _Span) -> int:
    if span.kind == "text":
        return 0
    return 1 + sum(_count(child) for child in span.children)


def _mrkdwn(span: _Span) -> str:
    """A span written in mrkdwn again, its markers hugging the words as Slack reads them."""
    if span.kind == "text":
        return span.text
    if span.kind == "code":
        return f"`{span.text}`"
    if span.kind == "pre":
        return f"```\n{span.text}\n```"
    inner = "".join(_mrkdwn(child) for child in span.children)
    if span.kind == "quote":
        return "\n".join(f"> {line}" for line in inner.split("\n"))
    words = inner.strip()
    if not words:
        return inner
    marker = next(m for m, tag in _TAGS.items() if tag == span.kind)
    lead, trail = inner[: len(inner) - len(inner.lstrip())], inner[len(inner.rstrip()) :]
    return f"{lead}{marker}{words}{marker}{trail}"


def _plain(span: _Span) -> str:
    if span.kind in ("text", "code", "pre"):
        return span.text
    inner = "".join(_plain(child) for child in span.children)
    if span.kind == "quote":
        return "\n".join(f"> {line}" for line in inner.split("\n"))
    return inner
