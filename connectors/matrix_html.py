"""A Matrix message's HTML in the staff dialect the connectors read (Slack's mrkdwn).

Matrix clients send what a staff member formatted twice: `body`, which for Element is the
Markdown source as typed (`**bold**`), and `formatted_body` in `org.matrix.custom.html` (Client-
Server API, "m.room.message msgtypes", https://spec.matrix.org/latest/client-server-api/#mroommessage-msgtypes).
The HTML is what the author saw, so it is the one read: `<strong>`/`<b>` → `*…*`, `<em>`/`<i>`
→ `_…_`, `<del>`/`<s>` → `~…~`, `<code>` → `` `…` ``, `<pre>` → a fenced block,
`<blockquote>` → `>` lines, list items → `• `, a link → "label (url)", and a mention pill
(a link to `https://matrix.to/#/@user:server`) → the name it shows. The reply fallback
(`<mx-reply>`) is dropped, as the spec asks of clients that show replies.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from html.parser import HTMLParser
from typing import Any

HTML_FORMAT = "org.matrix.custom.html"
_MARKERS = {"strong": "*", "b": "*", "em": "_", "i": "_", "del": "~", "s": "~", "strike": "~"}
_BLOCKS = {"p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "blockquote", "pre"}
_PILL = "https://matrix.to/#/"
# What begins a line inside a quote or a list: it stays before a style's marker.
_PREFIX = re.compile(r"(?:> ?)*(?:• )?")
# What may not touch a style's markers from outside for them to count (mrkdwn, as Slack).
_GLUED = re.compile(r"[\w*_~]")


def formatted_text(content: Mapping[str, Any]) -> str | None:
    """The staff text of a message content with HTML; None when it has none."""
    body = content.get("formatted_body")
    if content.get("format") != HTML_FORMAT or not isinstance(body, str):
        return None
    reader = _Reader()
    reader.feed(body)
    reader.close()
    return reader.text()


class _Reader(HTMLParser):
    """Collects the text with its markers; tags it does not know keep only their text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._out: list[str] = []
        self._links: list[tuple[str, int]] = []  # (href, where its label starts)
        self._marks: list[int] = []  # where each open style's marker stands
        # Styles that just ended, innermost first: how far from the end each opening marker
        # stands, their closing markers ending the text one after the other.
        self._closed: list[int] = []
        self._closed_at = 0  # the text's length then: anything written since ends them
        self._skip = 0  # inside <mx-reply>
        self._quote = 0
        self._pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "mx-reply":
            self._skip += 1
        elif self._skip:
            return
        elif tag in _MARKERS and _MARKERS[tag] in self._open_markers():
            self._marks.append(-1)  # bold inside bold: mrkdwn has it once
        elif tag in _MARKERS:
            self._unmark_before("*")
            if self._quote and not self._pre and self._at_line_start():
                self._out.append("> ")  # the quote's line begins before its first style
            self._marks.append(self._length())
            self._out.append(_MARKERS[tag])
        elif tag == "code" and not self._pre:
            self._out.append("`")
        elif tag == "pre":
            self._pre += 1
            self._line_break()
            self._out.append("```\n")
        elif tag == "br":
            self._out.append("\n")
        elif tag == "li":
            self._line_break()
            self._out.append("• ")
        elif tag == "a":
            self._links.append((dict(attrs).get("href") or "", self._length()))
        if tag in _BLOCKS:
            self._line_break()
        if tag == "blockquote":
            self._quote += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "mx-reply":
            self._skip = max(0, self._skip - 1)
        elif self._skip:
            return
        elif tag in _MARKERS and self._marks:
            start = self._marks.pop()
            if start >= 0:
                self._close_style(start)
        elif tag == "code" and not self._pre:
            self._out.append("`")
        elif tag == "pre":
            self._pre = max(0, self._pre - 1)
            self._line_break()
            self._out.append("```")
        elif tag == "a" and self._links:
            self._close_link()
        if tag == "blockquote":
            self._quote = max(0, self._quote - 1)
        if tag in _BLOCKS:
            self._line_break()

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if not self._pre and "\n" in data and not data.strip():
            return  # the layout between an HTML source's blocks shows nothing
        if self._quote and not self._pre:
            data = data.replace("\n", "\n> ")
            if self._at_line_start():
                data = "> " + data.lstrip()
        self._unmark_before(data)
        self._out.append(data)

    def _unmark_before(self, following: str) -> None:
        """Drop the markers of the style that just ended when what follows would keep its
        closing marker from counting: a letter, or another marker (Slack's rule)."""
        closed, self._closed = self._recent(), []
        if not closed or not _GLUED.match(following):
            return
        text = "".join(self._out)
        end = len(text)
        for removed, distance in enumerate(reversed(closed)):
            opening = len(text) - (distance - removed)
            text = text[:opening] + text[opening + 1 : -1]
        self._out = [text]
        # A link or style opened since (at the end) now opens that much earlier.
        gone = end - len(text)
        self._links = [(href, at - gone if at >= end else at) for href, at in self._links]
        self._marks = [at - gone if at >= end else at for at in self._marks]

    def _open_markers(self) -> set[str]:
        text = "".join(self._out)
        return {text[start] for start in self._marks if start >= 0}

    def _length(self) -> int:
        return sum(len(piece) for piece in self._out)

    def _close_style(self, start: int) -> None:
        """Put the closing marker, the pair hugging the words of each line it covers.

        mrkdwn styles hug their words and stay on one line, so the spaces the HTML kept
        inside go outside, a style over several lines is marked on each, and one around
        no words at all is dropped.
        """
        text = "".join(self._out)
        marker, inner = text[start], text[start + 1 :]
        # A marker right after a letter does not count: the first line stays unstyled. The
        # markers of the styles around it open at the same place and are looked past.
        before = start - 1
        while before in self._marks:
            before -= 1
        glued = before >= 0 and (text[before].isalnum() or text[before] == "_")
        lines: list[str] = []
        fenced = False  # a code block's lines are shown as written, never styled
        previous, ended = self._recent(), list[int]()
        for line in inner.split("\n"):
            found = _PREFIX.match(line)
            prefix = found.group(0) if lines and found else ""
            body = line[len(prefix) :]
            fence = body.startswith("```")
            if fence or fenced:
                fenced ^= fence
                lines.append(prefix + body)
                ended = []
                continue
            words = body.strip(" ")
            lead = body[: len(body) - len(body.lstrip(" "))]
            ended = previous  # what follows the words still follows them, unless marked below
            if words and not (glued and not lines and not lead):
                trail = body[len(lead) + len(words) :]
                body = f"{lead}{marker}{words}{marker}{trail}"
                # The styles that ended with these words now end one marker earlier.
                ended = [d + 1 for d in previous] + [len(body) - len(lead)] if not trail else []
            lines.append(prefix + body)
        self._out = [text[:start] + "\n".join(lines)]
        self._closed, self._closed_at = ended, self._length()

    def _recent(self) -> list[int]:
        """The styles that ended with the text as it stands, innermost first."""
        return self._closed if self._closed_at == self._length() else []

    def _close_link(self) -> None:
        href, start = self._links.pop()
        label = "".join(self._out)[start:]
        if href.startswith(_PILL):
            # A mention pill shows the member's name; the id behind it is not for customers.
            return
        if label.strip() and label.strip() != href and href:
            self._out.append(f" ({href})")
        elif not label.strip():
            self._out.append(href)

    def _at_line_start(self) -> bool:
        joined = "".join(self._out[-3:])
        return not joined or joined.endswith("\n")

    def _line_break(self) -> None:
        if self._out and not "".join(self._out[-2:]).endswith("\n"):
            self._out.append("\n")

    def text(self) -> str:
        """What was read, without the blank lines blocks leave at its ends."""
        lines = "".join(self._out).split("\n")
        # Paragraphs are separated by one line break, as staff typed them.
        return "\n".join(line.rstrip() for line in lines).strip("\n")
