"""What staff write keeps its words on the way to every messenger: any staff text becomes
HTML Telegram accepts, plain text and WhatsApp text keep every word in order, a message as
Slack sends it reads back as the same words on each platform, and a Matrix message's HTML
becomes staff text with the words its author saw.
"""

from __future__ import annotations

import html

from hypothesis import example, given, settings
from hypothesis import strategies as st

from connectors.markup import plain, telegram_html, whatsapp_parts
from connectors.matrix_html import HTML_FORMAT, formatted_text
from connectors.slack_text import readable
from tests.fakes.telegram_html import parse_html

PROPERTY = settings(max_examples=100, deadline=None, derandomize=True, database=None)
MARKERS = "*_~`"


def words(text: str) -> list[str]:
    """The words a reader sees in order: markers, quote signs and bullets aside."""
    found = (
        token.translate({ord(c): None for c in MARKERS}).strip(">•(),.") for token in text.split()
    )
    return [word for word in found if word]


def telegram_shows(text: str) -> str:
    """What a Telegram customer reads of staff text; ParseError where Telegram refuses it."""
    return parse_html(telegram_html(text)).text


# ---------------------------------------------------------------------- staff text

WORD = st.text(st.sampled_from("abcxyz9éЖ&<>\"'\U0001f44d"), min_size=1, max_size=6)
GAP = st.sampled_from([" ", "  ", "\n", "\n\n", "\t", ", ", ". "])
ODD = st.sampled_from(
    ["*", "_", "~", "`", ">", "```", "&amp;", "&lt;b&gt;", "<b>", "</i>", "a_b", "5 * 3", "**x**"]
)


@st.composite
def pieces(draw: st.DrawFn, depth: int = 0) -> str:
    """A word, a styled run, code, a fenced block, a quote, or something that looks like markup."""
    kind = draw(st.sampled_from(["word", "word", "word", "style", "code", "fence", "quote", "odd"]))
    if kind == "style" and depth < 2:
        marker = draw(st.sampled_from("*_~"))
        return marker + " ".join(draw(st.lists(pieces(depth + 1), min_size=1, max_size=3))) + marker
    if kind == "code":
        return f"`{draw(WORD)} {draw(WORD)}`"
    if kind == "fence":
        return f"```\n{draw(WORD)}{draw(GAP)}{draw(WORD)}\n```"
    if kind == "quote":
        return f"\n> {draw(WORD)} {draw(WORD)}\n"
    if kind == "odd":
        return draw(ODD)
    return draw(WORD)


@st.composite
def staff_texts(draw: st.DrawFn) -> str:
    """Text as staff write it: words with Slack's markers, right or wrong."""
    found = draw(st.lists(st.tuples(pieces(), GAP), max_size=10))
    return "".join(piece + gap for piece, gap in found)


@PROPERTY
@given(text=staff_texts())
def test_telegram_accepts_any_staff_text_and_shows_every_word(text):
    assert words(telegram_shows(text)) == words(text)


@PROPERTY
@given(text=staff_texts())
def test_plain_and_whatsapp_text_keep_every_word_in_order(text):
    assert words(plain(text)) == words(text)


@PROPERTY
@given(text=staff_texts())
def test_whatsapp_gets_a_short_text_as_written(text):
    assert whatsapp_parts(text, 4096) == [text]


# ---------------------------------------------------------------------- Slack round trip

# Paths with the characters mrkdwn uses as markers: a URL keeps them.
URLS = st.sampled_from(
    [
        "https://example.com/a?b=1&c=2",
        "https://en.wikipedia.org/wiki/_Underscore_",
        "https://example.com/~user/~",
        "https://example.com/*star*",
        "https://example.com/snake_case_path",
        "http://x.y/",
    ]
)
EMOJI = st.sampled_from([(":smile:", "😄"), (":+1:", "👍"), (":flag-de:", "🇩🇪"), (":tada:", "🎉")])


@st.composite
def slack_messages(draw: st.DrawFn) -> tuple[str, str]:
    """A message as Slack sends it (`&<>` escaped, links in `<…>`, emoji as codes), and the
    words an agent meant."""
    # A `>` that begins a line quotes it, in Slack as here: the message begins with a word.
    sent: list[str] = ["Hi"]
    meant: list[str] = ["Hi"]
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["word", "word", "link", "labelled", "emoji"]))
        if kind == "word":
            word = draw(WORD)
            sent.append(html.escape(word, quote=False))
            meant.append(word)
        elif kind == "link":
            url = draw(URLS)
            sent.append(f"<{html.escape(url, quote=False)}>")
            meant.append(url)
        elif kind == "labelled":
            url, label = draw(URLS), draw(WORD)
            sent.append(f"<{html.escape(url, quote=False)}|{html.escape(label, quote=False)}>")
            meant.append(f"{label} ({url})")
        else:
            code, shown = draw(EMOJI)
            sent.append(code)
            meant.append(shown)
    return " ".join(sent), " ".join(meant)


def exact_words(text: str) -> list[str]:
    """Every word as shown, markers included: a marker lost or added changes a word."""
    return text.split()


@PROPERTY
@given(message=slack_messages())
@example(
    message=(
        "Hi <https://en.wikipedia.org/wiki/_Underscore_|9>",
        "Hi 9 (https://en.wikipedia.org/wiki/_Underscore_)",
    )
)
@example(
    message=(
        "Hi <https://example.com/~user/~|9> 9 <https://example.com/~user/~>",
        "Hi 9 (https://example.com/~user/~) 9 https://example.com/~user/~",
    )
)
@example(
    message=("Hi <https://example.com/*star*> &amp; more", "Hi https://example.com/*star* & more")
)
def test_a_slack_message_reads_back_as_the_same_words_on_every_platform(message):
    sent, meant = message
    staff = readable(sent)
    assert exact_words(staff) == exact_words(meant)
    assert exact_words(telegram_shows(staff)) == exact_words(meant)
    assert exact_words(plain(staff)) == exact_words(meant)
    assert exact_words("".join(whatsapp_parts(staff, 4096))) == exact_words(meant)


# ---------------------------------------------------------------------- Matrix HTML

INLINE = ["b", "strong", "i", "em", "s", "del", "code"]
BLOCKS = ["p", "blockquote", "pre"]
TEXT = st.text(st.sampled_from("abcxyz9éЖ&<\"' "), min_size=1, max_size=12)
HREFS = st.sampled_from(["https://example.com/a_b", "https://example.org/", "mailto:a@b.example"])


@st.composite
def matrix_html(draw: st.DrawFn, depth: int = 0, styled: bool = False) -> tuple[str, str]:
    """A `formatted_body` of the tags Matrix allows, and the text its reader sees."""
    kind = draw(st.sampled_from(["text", "text", "inline", "block", "a", "br", "list", "reply"]))
    if depth >= 3 or kind == "text":
        text = draw(TEXT)
        return html.escape(text, quote=False), text
    if kind == "br":
        return "<br>", "\n"
    if kind == "a":
        href, label = draw(HREFS), draw(TEXT)
        shown = f"{label} ({href})" if label.strip() else label + href
        return f'<a href="{href}">{html.escape(label, quote=False)}</a>', shown
    if kind == "reply":
        # The reply fallback is left out, as the spec asks of clients that show replies.
        quoted = draw(TEXT)
        return (
            f"<mx-reply><blockquote>{html.escape(quoted, quote=False)}</blockquote></mx-reply>",
            "",
        )
    if kind == "list":
        tag = draw(st.sampled_from(["ul", "ol"]))
        items = draw(st.lists(matrix_html(depth + 1, styled), min_size=1, max_size=3))
        body = "".join(f"<li>{source}</li>" for source, _ in items)
        return f"<{tag}>{body}</{tag}>", "".join(f"\n{shown}\n" for _, shown in items)
    tag = draw(st.sampled_from(INLINE if kind == "inline" else BLOCKS))
    if tag == "code" and styled:
        # Telegram lets no style contain code, so mrkdwn's converters show none around it.
        tag = "em"
    inner = styled or tag in INLINE
    children = draw(st.lists(matrix_html(depth + 1, inner), min_size=1, max_size=3))
    source, shown = "".join(c[0] for c in children), "".join(c[1] for c in children)
    if tag in ("code", "pre"):
        # Code holds text only; HTML inside it would be shown as written.
        text = draw(TEXT)
        source, shown = html.escape(text, quote=False), text
    if tag in BLOCKS:
        shown = f"\n{shown}\n"
    return f"<{tag}>{source}</{tag}>", shown


@st.composite
def matrix_bodies(draw: st.DrawFn) -> tuple[str, str]:
    """A whole `formatted_body`: a few pieces one after the other."""
    pieces = draw(st.lists(matrix_html(), min_size=1, max_size=5))
    return "".join(p[0] for p in pieces), "".join(p[1] for p in pieces)


def shown_words(text: str) -> list[str]:
    """The words as shown, markers included: a marker shown as typed changes its word."""
    found = (token.strip(">•(),.") for token in text.split())
    return [word for word in found if word]


@PROPERTY
@given(body=matrix_bodies())
@example(body=("<b><br></b>", "\n"))
@example(body=("9<b>9</b>", "99"))
@example(body=("9<b><i>9</i></b>", "99"))
@example(body=("<b><i>9</i></b>9", "99"))
@example(body=('<b>9</b><a href="https://example.com/a_b">9</a>', "99 (https://example.com/a_b)"))
@example(body=("<b><b>9</b></b>", "9"))
@example(body=("<b><pre>9</pre></b>", "\n9\n"))
@example(body=('<a href="https://example.com/a_b">9</a><b>9</b>', "9 (https://example.com/a_b)9"))
def test_a_matrix_message_keeps_every_word_its_author_saw(body):
    source, shown = body
    staff = formatted_text({"format": HTML_FORMAT, "body": "-", "formatted_body": source})
    assert staff is not None
    assert words(staff) == words(shown)
    # No marker is left that the converters do not read: customers see no stray `*` or `_`.
    assert shown_words(telegram_shows(staff)) == shown_words(shown)
    assert shown_words(plain(staff)) == shown_words(shown)
