"""A long formatted staff message reaches each messenger in parts the platform accepts: every
part under the platform's limit, each part's markup whole, and together every word in order.

The limits: Telegram 4,096 characters of the text after its HTML parse, WhatsApp 4,096 of the
body, Messenger 2,000 (plain text). Each connector is driven through its send path against the
fake platform, which refuses what the platform refuses.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from bridge.config import MessengerPage, MessengerSettings, Settings, TelegramSettings
from bridge.errors import PermanentError
from bridge.types import MESSENGER, TELEGRAM, WHATSAPP, AccountId, ChatId, OutboundMessage
from connectors import messenger
from connectors.markup import plain, telegram_html
from connectors.telegram import TelegramConnector
from connectors.whatsapp import WhatsAppConnector
from tests import connector_kit
from tests.fakes.messenger import FakeMessenger
from tests.fakes.telegram import FakeTelegram
from tests.fakes.telegram_html import parse_html
from tests.fakes.whatsapp import FakeWhatsApp
from tests.test_whatsapp_connector import account_settings

http, sink = connector_kit.http, connector_kit.sink

SPLIT = settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
CHAT = "4242"
PNID, CUSTOMER = "1001", "15550001111"
PSID, PAGE = "7001", "3003"

WORD = st.text(st.sampled_from("abcdefxyzé9Ж"), min_size=1, max_size=8)
GAP = st.sampled_from([" ", " ", " ", "\n", "\n\n", ", ", " & ", " <x> "])


@st.composite
def stretches(draw: st.DrawFn) -> str:
    """A run of words, sometimes bold, italic, struck, in code, fenced or quoted."""
    words = [draw(WORD) for _ in range(draw(st.integers(1, 12)))]
    many = draw(st.integers(1, 120))
    body = " ".join(words * many)
    kind = draw(st.sampled_from(["plain", "*", "_", "~", "`", "fence", "quote", "nested"]))
    if kind in "*_~":
        return f"{kind}{body}{kind}"
    if kind == "`":
        return f"`{body}`"
    if kind == "fence":
        return "```\n" + "\n".join(" ".join(words) for _ in range(many)) + "\n```"
    if kind == "quote":
        return "\n" + "\n".join("> " + " ".join(words) for _ in range(many)) + "\n"
    if kind == "nested":
        return f"*{body} _{' '.join(words)}_ {body}*"
    return body


@st.composite
def long_texts(draw: st.DrawFn) -> str:
    """Staff text of some thousands of characters with formatting across the cuts."""
    parts = [draw(stretches()) for _ in range(draw(st.integers(1, 8)))]
    gaps = [draw(GAP) for _ in parts]
    return "".join(part + gap for part, gap in zip(parts, gaps, strict=True)).strip()


def words(text: str) -> list[str]:
    """The words a reader sees, quote signs and punctuation aside; a marker shown as typed
    stays on its word."""
    found = (token.strip(">,&<") for token in text.split())
    return [word for word in found if word]


BOLD_ACROSS = "word " * 900 + "*" + "bold " * 100 + "end*"
FENCE_ACROSS = "x" * 4000 + "\n```\n" + "code line\n" * 30 + "```"


@pytest.fixture
async def telegram(http, sink):
    async with FakeTelegram() as fake:
        settings = TelegramSettings(
            token=SecretStr(fake.token), api_base=fake.base_url, webhook_secret=SecretStr("s" * 20)
        )
        yield fake, TelegramConnector(settings, http, sink, mode="polling", public_url=None)


@SPLIT
@given(text=long_texts())
@example(text=BOLD_ACROSS)
@example(text=FENCE_ACROSS)
async def test_telegram_parts_parse_fit_and_show_every_word(telegram, text):
    fake, conn = telegram
    before = len(fake.messages_to(CHAT))
    message = OutboundMessage(
        platform=TELEGRAM, account=AccountId("1"), chat_id=ChatId(CHAT), text=text
    )
    await conn.send(message)
    parts = fake.messages_to(CHAT)[before:]
    # The fake parsed each part as Telegram does, refusing broken HTML and over-long text.
    assert all(part.parse_mode == "HTML" and len(part.text) <= 4096 for part in parts)
    whole = parse_html(telegram_html(text)).text
    assert words(" ".join(part.text for part in parts)) == words(whole)


@pytest.fixture
async def whatsapp(http, sink):
    async with FakeWhatsApp(phone_number_ids=(PNID,)) as fake:
        yield fake, WhatsAppConnector(account_settings(fake), http, sink)


@SPLIT
@given(text=long_texts())
@example(text=BOLD_ACROSS)
@example(text=FENCE_ACROSS)
async def test_whatsapp_parts_fit_and_keep_their_markers_whole(whatsapp, text):
    fake, conn = whatsapp
    before = len(fake.sent)
    message = OutboundMessage(
        platform=WHATSAPP, account=AccountId(PNID), chat_id=ChatId(CUSTOMER), text=text
    )
    await conn.send(message)
    bodies = [sent["text"]["body"] for sent in fake.sent[before:]]
    assert all(len(body) <= 4096 for body in bodies)
    # Each part read on its own shows what the whole showed: no marker left unpaired.
    assert words(" ".join(plain(body) for body in bodies)) == words(plain(text))


@pytest.fixture
async def facebook(http, sink):
    async with FakeMessenger() as fake:
        page = MessengerPage(
            page_id=PAGE,
            page_token=SecretStr(fake.page_token),
            app_secret=SecretStr(fake.app_secret),
            verify_token=SecretStr(fake.verify_token),
            api_base=fake.base_url,
        )
        [conn] = messenger.build(
            Settings(messenger=MessengerSettings(accounts=(page,))), http, sink, None
        )
        fake.last_user_message[PSID] = time.time() - 3600
        yield fake, conn


@SPLIT
@given(text=long_texts())
@example(text=BOLD_ACROSS)
async def test_messenger_parts_fit_and_show_every_word(facebook, text):
    fake, conn = facebook
    before = len(fake.texts_to(PSID))
    last = datetime.now(UTC) - timedelta(hours=1)
    message = OutboundMessage(
        platform=MESSENGER,
        account=AccountId(PAGE),
        chat_id=ChatId(PSID),
        text=text,
        last_inbound_at=last,
    )
    await conn.send(message)
    texts = fake.texts_to(PSID)[before:]
    assert all(len(t) <= 2000 for t in texts)
    assert words(" ".join(texts)) == words(plain(text))


async def test_an_edit_of_a_long_formatted_message_keeps_every_word_it_can_show(telegram):
    fake, conn = telegram
    message = OutboundMessage(
        platform=TELEGRAM, account=AccountId("1"), chat_id=ChatId(CHAT), text="draft"
    )
    external_id = await conn.send(message)
    # 4,500 characters as written, 2,700 as shown: the edit fits whole.
    fitting = "*ab* " * 900
    await conn.edit(ChatId(CHAT), external_id, fitting)
    # Longer than a message: it shows what fits and ends in "…", no marker left over.
    longer = "*abc* " * 1200
    await conn.edit(ChatId(CHAT), external_id, longer)
    [sent] = fake.messages_to(CHAT)
    assert sent.edited_texts[0] == parse_html(telegram_html(fitting)).text
    shown = sent.edited_texts[1]
    assert len(shown) <= 4096 and shown.endswith("…") and "*" not in shown


async def test_a_long_whatsapp_text_that_shows_nothing_is_refused_not_crashed(whatsapp):
    fake, conn = whatsapp
    message = OutboundMessage(
        platform=WHATSAPP, account=AccountId(PNID), chat_id=ChatId(CUSTOMER), text="x ` ` " * 900
    )
    await conn.send(message)  # the x's show
    blank = OutboundMessage(
        platform=WHATSAPP, account=AccountId(PNID), chat_id=ChatId(CUSTOMER), text="` ` " * 1200
    )
    with pytest.raises(PermanentError, match="shows no text"):
        await conn.send(blank)
