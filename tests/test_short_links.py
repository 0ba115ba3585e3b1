"""Short links: `/shorten` makes one, `GET /s/<code>` counts a click and redirects, a contact's own
link (`/s/<code>/<token>`) names them in the click without showing who they are, broadcasts have
their texts' URLs rewritten into short links, and erasing a contact leaves anonymous clicks."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from bridge.app import LINKS, PIPELINE
from bridge.links import ShortLinks, make_token, read_token, urls_in
from storage import Database
from storage.shortlinks import Click
from tests.commands_kit import ADMIN, AGENT, command
from tests.harness import eventually

ANNA = 7420011
SALE = "https://shop.example/sale?from=sms&x=1"


def service(world) -> ShortLinks:
    """The short links service of the running bridge."""
    return world.bridge.app[LINKS]


def public_url(world) -> str:
    url = world.bridge.settings.bridge.public_url
    assert url
    return str(url).rstrip("/")


async def follow(url: str, *, method: str = "GET", user_agent: str | None = None):
    """(status, Location, body) of one request, without following the redirect."""
    headers = {"User-Agent": user_agent} if user_agent else {}
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, url, allow_redirects=False, headers=headers) as resp,
    ):
        return resp.status, resp.headers.get("Location"), await resp.text()


async def shortened(world, url: str) -> str:
    reply = await command(world, f"shorten {url}", user=AGENT)
    assert reply.ok, reply.text
    return reply.title or ""


async def clicks(world) -> list[tuple[str, int | None]]:
    """(code, contact id) of every click, oldest first."""
    rows = await world.sql(
        "select s.code, c.contact_id from link_clicks c join short_links s on s.id = c.link_id"
        " order by c.id"
    )
    return [(code, contact) for code, contact in rows]


async def contact_writes(world, chat_id: int, name: str) -> int:
    """A Telegram customer writes; their contact's id."""
    await world.says(chat_id, "Hello", first_name=name)

    async def found():
        rows = await world.sql(f"select id from contacts where chat_id = '{chat_id}'")
        return rows[0][0] if rows else None

    return int(await eventually(found, message=f"the contact of {chat_id}"))


def code_of(short_url: str) -> str:
    return short_url.rsplit("/s/", 1)[1].split("/")[0]


# -- /shorten and following a link ----------------------------------------------------------


async def test_shorten_answers_a_link_of_the_public_url_that_redirects_and_counts(world):
    short = await shortened(world, SALE)
    assert re.fullmatch(re.escape(public_url(world)) + r"/s/[A-Za-z0-9]{7}", short)
    assert await world.sql("select code, url, broadcast_id, created_by from short_links") == [
        (code_of(short), SALE, None, AGENT)
    ]
    assert await clicks(world) == []

    status, location, _ = await follow(short)
    assert (status, location) == (302, SALE)
    assert await clicks(world) == [(code_of(short), None)]
    await follow(short)  # the same visitor within the minute: one click
    assert len(await clicks(world)) == 1
    await follow(short, user_agent="Another browser/1.0")
    assert len(await clicks(world)) == 2


async def test_previews_and_head_requests_redirect_without_counting(world):
    short = await shortened(world, SALE)
    for agent in ("TelegramBot (like TwitterBot)", "WhatsApp/2.23.20.0 A", "Slackbot 1.0"):
        assert (await follow(short, user_agent=agent))[:2] == (302, SALE)
    assert (await follow(short, method="HEAD"))[:2] == (302, SALE)
    assert await clicks(world) == []


async def test_a_link_as_slack_sends_it_is_taken_without_its_brackets(world):
    short = await shortened(world, f"<{SALE}|shop.example/sale>")
    assert (await follow(short))[:2] == (302, SALE)


async def test_a_url_with_non_ascii_letters_is_redirected_to_its_ascii_form(world):
    short = await shortened(world, "https://bäckerei.example/Brötchen?größe=groß")
    _, location, _ = await follow(short)
    assert location == "https://xn--bckerei-5wa.example/Br%C3%B6tchen?gr%C3%B6%C3%9Fe=gro%C3%9F"


async def test_an_unknown_code_is_a_404_in_plain_words(world):
    await shortened(world, SALE)
    for path in ("/s/ZZZZZZZ", "/s/ZZZZZZZ/sometoken", "/s/not-a-code!"):
        status, location, body = await follow(public_url(world) + path)
        assert (status, location) == (404, None)
        assert "This short link does not exist" in body
    assert await clicks(world) == []


@pytest.mark.parametrize(
    ("typed", "problem"),
    [
        ("ftp://files.example.org/price.pdf", "Only http:// and https:// links"),
        ("javascript:alert(1)", "Write the whole link, starting with https://"),
        ("shop.example/sale", "Write the whole link, starting with https://"),
        ("https:///nohost", "The link has no host name"),
        ("https://shop.example/" + "x" * 2000, "The link has 2,021 characters; at most 2,000"),
    ],
)
async def test_what_is_not_an_http_link_is_refused(world, typed, problem):
    reply = await command(world, f"shorten {typed}", user=AGENT)
    assert not reply.ok and (reply.title or "").startswith(problem), reply.text
    assert "Usage: `/shorten <url>`" in reply.lines
    assert await world.sql("select count(*) from short_links") == [(0,)]


async def test_shorten_refuses_bad_urls_with_a_value_error(world):
    for bad in ("mailto:anna@example.org", "https://shop.example/a b", "https://" + "x" * 2000):
        with pytest.raises(ValueError):
            await service(world).shorten(bad, by="test")
    assert await world.sql("select count(*) from short_links") == [(0,)]


async def test_shorten_without_a_link_or_with_two_answers_the_usage(world):
    for line in ("shorten", "shorten https://a.example https://b.example"):
        reply = await command(world, line, user=AGENT)
        assert not reply.ok and "Example: `/shorten https://example.org/spring-sale`" in reply.lines


async def test_shorten_list_shows_the_newest_links_with_their_clicks(world):
    anna = await contact_writes(world, ANNA, "Anna")
    first = await shortened(world, "https://shop.example/first")
    second = await shortened(world, "https://shop.example/second")
    await follow(first)
    await follow(first, user_agent="Another browser/1.0")
    await follow(await service(world).recipient_url(first, anna))

    reply = await command(world, "shorten list", user=AGENT)
    assert reply.ok and reply.title == "2 short links", reply.text
    assert reply.lines[0].startswith(f"{second} → https://shop.example/second: *0 clicks*")
    assert reply.lines[1].startswith(
        f"{first} → https://shop.example/first: *3 clicks by 1 contact*"
    )
    assert f"({AGENT}, {datetime.now(UTC):%Y-%m-%d})" in reply.lines[1]


async def test_shorten_list_without_links_says_how_to_make_one(world):
    reply = await command(world, "shorten list", user=AGENT)
    assert reply.title == "No short links yet"


async def test_shorten_help_lists_both_actions(world):
    reply = await command(world, "shorten help", user=AGENT)
    assert reply.title == "/shorten: Short links that count their clicks"
    assert any(line.startswith("`/shorten list`") for line in reply.lines)


async def test_staff_without_a_role_may_not_shorten(world):
    await command(world, f"user role {AGENT} none", user=ADMIN)
    reply = await command(world, f"shorten {SALE}", user=AGENT)
    assert not reply.ok and "needs the agent role" in (reply.title or "")


# -- per-recipient links ------------------------------------------------------------------------


async def test_a_contacts_own_link_names_them_in_the_click_without_showing_their_id(world):
    anna = await contact_writes(world, ANNA, "Anna")
    short = await shortened(world, SALE)
    own = await service(world).recipient_url(short, anna)
    token = own.removeprefix(short + "/")
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", token)
    # The id is enciphered, not encoded: the next contact's token looks nothing like Anna's.
    plain = base64.urlsafe_b64encode(anna.to_bytes(8, "big")).decode()[:10]
    assert not token.startswith(plain)
    neighbour = (await service(world).recipient_url(short, anna + 1)).rsplit("/", 1)[1]
    assert neighbour[:10] != token[:10]

    assert (await follow(own))[:2] == (302, SALE)
    assert await clicks(world) == [(code_of(short), anna)]
    # Each link gives the same contact another token.
    other = await shortened(world, "https://shop.example/other")
    assert (await service(world).recipient_url(other, anna)).rsplit("/", 1)[1] != token


async def test_a_tampered_token_still_redirects_but_names_nobody(world):
    anna = await contact_writes(world, ANNA, "Anna")
    short = await shortened(world, SALE)
    other = await shortened(world, "https://shop.example/other")
    own = await service(world).recipient_url(short, anna)
    token = own.rsplit("/", 1)[1]
    flipped = token[:5] + ("A" if token[5] != "A" else "B") + token[6:]
    for number, url in enumerate(
        (
            f"{short}/{flipped}",
            f"{short}/garbage",
            f"{other}/{token}",  # Anna's token of another link
        )
    ):
        # Distinct visitors: one visitor's clicks on a link count once a minute.
        assert (await follow(url, user_agent=f"Browser/{number}"))[0] == 302
    assert [contact for _, contact in await clicks(world)] == [None, None, None]


async def test_recipient_url_wants_a_short_link_of_this_bridge(world):
    with pytest.raises(ValueError):
        await service(world).recipient_url("https://elsewhere.example/s/abcdefg", 1)


async def test_tokens_round_trip_only_for_their_code_and_key():
    key, other_key = b"k" * 32, b"o" * 32
    for contact in (1, 42, 2**40 + 7, 2**63 - 1):
        token = make_token(key, "abcdefg", contact)
        assert read_token(key, "abcdefg", token) == contact
        assert read_token(key, "abcdefh", token) is None
        assert read_token(other_key, "abcdefg", token) is None
    assert read_token(key, "abcdefg", "A" * 22) is None
    assert read_token(key, "abcdefg", "short") is None
    with pytest.raises(ValueError):
        make_token(key, "abcdefg", -1)


# -- rewriting a text -----------------------------------------------------------------------


async def test_rewrite_replaces_each_url_once_and_leaves_the_rest_alone(world):
    links = service(world)
    text = (
        f"Sale today: {SALE}. Questions? (https://shop.example/faq), or again {SALE}!\n"
        "Read https://en.wikipedia.org/wiki/Bridge_(structure), not www.example.org, "
        "ftp://files.example.org, mailto:help@shop.example or https://."
    )
    rewritten, codes = await links.rewrite(text, broadcast_id=41, by="Ada")
    assert len(codes) == 3 and len(set(codes)) == 3
    prefix = f"{public_url(world)}/s/"
    sale, faq, wiki = (prefix + code for code in codes)
    assert rewritten == (
        f"Sale today: {sale}. Questions? ({faq}), or again {sale}!\n"
        f"Read {wiki}, not www.example.org, "
        "ftp://files.example.org, mailto:help@shop.example or https://."
    )
    assert sorted(await world.sql("select url, broadcast_id, created_by from short_links")) == [
        ("https://en.wikipedia.org/wiki/Bridge_(structure)", 41, "Ada"),
        ("https://shop.example/faq", 41, "Ada"),
        (SALE, 41, "Ada"),
    ]
    # One link per (broadcast, URL): the same broadcast again reuses them, another gets its own.
    assert await links.rewrite(text, broadcast_id=41, by="Ada") == (rewritten, codes)
    _, others = await links.rewrite(text, broadcast_id=42, by="Ada")
    assert set(others).isdisjoint(codes)
    # The bridge's own short links are not shortened again.
    assert await links.rewrite(rewritten, broadcast_id=43, by="Ada") == (rewritten, [])
    assert await links.rewrite("No links here.", broadcast_id=41, by="Ada") == (
        "No links here.",
        [],
    )
    (status, location, _) = await follow(faq)
    assert (status, location) == (302, "https://shop.example/faq")


async def test_recipient_text_makes_a_rewritten_texts_links_the_contacts_own(world):
    anna = await contact_writes(world, ANNA, "Anna")
    links = service(world)
    rewritten, codes = await links.rewrite(f"See {SALE} now", broadcast_id=7, by="Ada")
    own = await links.recipient_text(rewritten, codes, anna)
    [url] = re.findall(r"https?://\S+", own)
    assert url.startswith(f"{public_url(world)}/s/{codes[0]}/")
    assert (await follow(url))[:2] == (302, SALE)
    assert await clicks(world) == [(codes[0], anna)]


def test_urls_in_a_text_end_before_the_punctuation_after_them():
    text = "a https://x.example/p?q=1). b [https://y.example/w_(z)] c https://z.example/é?!"
    assert [url for _, _, url in urls_in(text)] == [
        "https://x.example/p?q=1",
        "https://y.example/w_(z)",
        "https://z.example/é",
    ]


# -- storage, on SQLite and PostgreSQL ------------------------------------------------------


async def test_clicks_per_link_and_per_broadcast(database: Database):
    at = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)

    def make(tx):
        first = tx.links.link_for("https://a.example", broadcast_id=5, by="Ada", at=at)
        again = tx.links.link_for("https://a.example", broadcast_id=5, by="Ada", at=at)
        second = tx.links.link_for("https://b.example", broadcast_id=5, by="Ada", at=at)
        alone = tx.links.create_link("https://a.example", broadcast_id=None, by="Bo", at=at)
        assert first == again and len({first.code, second.code, alone.code}) == 3
        # Contact 99 does not exist (erased since the link went out): the click names nobody.
        tx.links.record_clicks(
            [
                Click(first.id, at),
                Click(first.id, at.replace(hour=13), 99),
                Click(second.id, at.replace(hour=14)),
            ],
        )
        return first, second, alone

    first, second, alone = await database.write_tx(make)
    assert await database.read_tx(lambda tx: tx.links.link_by_code(first.code)) == first
    assert await database.read_tx(lambda tx: tx.links.link_by_code("nope")) is None
    per_link = await database.read_tx(lambda tx: tx.links.broadcast_links(5))
    assert [(s.link.code, s.clicks, s.contacts, s.last_click) for s in per_link] == [
        (first.code, 2, 0, at.replace(hour=13)),
        (second.code, 1, 0, at.replace(hour=14)),
    ]
    assert await database.read_tx(lambda tx: tx.links.broadcast_clicks(5)) == (3, 0)
    latest = await database.read_tx(lambda tx: tx.links.latest_links())
    assert [s.link.code for s in latest] == [alone.code, second.code, first.code]
    assert latest[0].clicks == 0 and latest[0].last_click is None


# -- erasure --------------------------------------------------------------------------------


async def test_forgetting_a_contact_leaves_only_anonymous_clicks(world):
    anna = await contact_writes(world, ANNA, "Anna")
    short = await shortened(world, SALE)
    own = await service(world).recipient_url(short, anna)
    await follow(own)
    await follow(short)
    assert await clicks(world) == [(code_of(short), anna), (code_of(short), None)]

    reply = await command(world, f"contact forget #{anna} --confirm", user=ADMIN, user_name="Ada")
    assert reply.ok, reply.text
    assert await clicks(world) == [(code_of(short), None), (code_of(short), None)]
    assert await world.sql(f"select count(*) from link_clicks where contact_id = {anna}") == [(0,)]
    # Her old link still leads to the page; the click (a minute later) names nobody.
    pipeline = world.bridge.app[PIPELINE]
    later = pipeline.clock() + timedelta(seconds=61)
    pipeline.clock = lambda: later
    assert (await follow(own))[:2] == (302, SALE)
    assert [contact for _, contact in await clicks(world)] == [None, None, None]
