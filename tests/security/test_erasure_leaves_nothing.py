"""After `/contact forget`, nothing of the customer may be read from the database files: not
in the SQLite main file nor its write-ahead log (as bytes, where deleted rows linger in free
pages and old page images), not in a file a bot answered them with. On PostgreSQL, where bytes
on disk cannot be promised, the touched tables are vacuumed. In Matrix application-service
mode no user id contains the customer's phone number: a homeserver never forgets user ids."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.commands_kit import command
from tests.fakes.twilio import FakeTwilio
from tests.harness import eventually
from tests.matrix_user import MatrixUser, body_of
from tests.rules_kit import Endpoint
from tests.test_matrix_appservice import appservice_world
from tests.world import start_world, stop_world

CHAT = 7319924461
NAME = {"first_name": "Zenobia", "last_name": "Quirkfeather", "username": "zq_ferncastle"}
PHONE = "+4915177452290"
ORDER = "WQ-88217-XY"
ADDRESS = "Ottilienweg 917"
# The bot's own file for this customer (a per-contact download), and a rule's answer file
# that every customer gets (shared: it stays).
BOT_FILE = b"\x89PNG\r\n\x1a\n" + b"ROUTE-FOR-ZQ-55812" + bytes(range(32))
RULE_FILE = b"%PDF-1.4 price list for everybody"
SECRETS = [NAME["first_name"], NAME["last_name"], NAME["username"], PHONE, ORDER, ADDRESS]


@pytest.fixture(params=["sqlite", "postgresql"])
async def rig(request, tmp_path):
    endpoint = Endpoint()
    await endpoint.start()
    extra = {}
    if request.param == "postgresql":
        cluster = request.getfixturevalue("pg_cluster")
        extra["database"] = str(cluster.create_database("erasure"))
    # The fake bot listens on loopback: allow-listed by its port, and only that.
    sections = {"security": {"allow_private": [endpoint.allow]}}
    world = await start_world(tmp_path, sections=sections, **extra)
    yield world, endpoint, tmp_path / "bridge.db"
    await stop_world(world)
    await endpoint.stop()


async def settled(world) -> None:
    async def idle():
        return await world.sql("select count(*) from outbox where state = 'pending'") == [(0,)]

    await eventually(idle, message="an empty outbox")


def shared_contact(world, chat_id: int, phone: str) -> dict:
    """A Telegram update in which the customer shares their own contact card."""
    update = world.tg.text_update(chat_id, "x", **NAME)
    message = update["message"]
    del message["text"]
    message["contact"] = {
        "phone_number": phone,
        "first_name": NAME["first_name"],
        "user_id": chat_id,
    }
    return update


async def a_customer_with_history(world, endpoint) -> int:
    """The customer writes (their phone number too), a bot answers with a file of its own,
    a rule answers with the shared price list; returns the contact id."""
    endpoint.files["route-zq.png"] = (BOT_FILE, "image/png")
    endpoint.files["prices.pdf"] = (RULE_FILE, "application/pdf")
    endpoint.bot_answer = {
        "text": f"Your order {ORDER} goes to {ADDRESS}",
        "media": [endpoint.url("/files/route-zq.png")],
    }
    for line in (
        f'bot contain "route" --do "bot: {endpoint.url("/bot")}"',
        f'prices contain "price" --do "answer-file: {endpoint.url("/files/prices.pdf")} | Prices"',
    ):
        reply = await command(world, f"rule add {line}")
        assert reply.ok, reply.text
    await world.says(CHAT, f"Order {ORDER} to {ADDRESS}, call me at {PHONE}", **NAME)
    await world.customer(shared_contact(world, CHAT, PHONE))
    await world.says(CHAT, "Which route does my parcel take?", **NAME)
    await world.says(CHAT, "And what is the price?", **NAME)
    await eventually(
        lambda: len([m for m in world.tg.messages_to(CHAT) if m.file_bytes]) == 2,
        message="the bot's file and the rule's file",
    )
    await settled(world)
    [(contact,)] = await world.sql(f"select id from contacts where chat_id = '{CHAT}'")
    return int(contact)


async def forget(world, contact: int) -> None:
    reply = await command(world, f"contact forget #{contact} --confirm", user_name="Ada")
    assert reply.ok, reply.text
    await settled(world)


def found_in(path: Path, needles: list[bytes]) -> list[str]:
    data = path.read_bytes() if path.exists() else b""
    return [f"{path.name}: {n!r}" for n in needles if n in data]


@pytest.mark.parametrize("rig", ["sqlite"], indirect=True)
async def test_forgotten_customer_is_in_neither_the_database_file_nor_its_wal(rig):
    world, endpoint, path = rig
    contact = await a_customer_with_history(world, endpoint)
    needles = [s.encode() for s in SECRETS] + [str(CHAT).encode(), BOT_FILE[8:26]]
    wal = path.with_name(path.name + "-wal")
    assert found_in(path, needles) + found_in(wal, needles), "the data was there to be found"

    await forget(world, contact)

    assert found_in(path, needles) + found_in(wal, needles) == []
    # The rule's own answer file is everybody's: it stays.
    assert await world.sql("select count(*) from rule_files") == [(1,)]
    assert RULE_FILE in path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


@pytest.mark.parametrize("rig", ["postgresql"], indirect=True)
async def test_forgetting_on_postgresql_vacuums_the_touched_tables(rig):
    world, endpoint, _ = rig
    contact = await a_customer_with_history(world, endpoint)
    before = await world.sql(
        "select relname, vacuum_count from pg_stat_user_tables"
        " where relname in ('contacts', 'messages', 'rule_files')"
    )

    await forget(world, contact)

    async def vacuumed():
        after = await world.sql(
            "select relname, vacuum_count from pg_stat_user_tables"
            " where relname in ('contacts', 'messages', 'rule_files')"
        )
        return len(after) == 3 and all(dict(after)[t] > dict(before).get(t, 0) for t in dict(after))

    # The statistics collector reports a little later than VACUUM ends.
    await eventually(vacuumed, message="VACUUM of the erased contact's tables", timeout=30)
    assert await world.sql("select count(*) from rule_files") == [(1,)]
    rows = await world.sql(
        "select count(*) from messages where text like '%" + ORDER + "%'"
        " or text like '%" + PHONE + "%'"
    )
    assert rows == [(0,)]


# -- Matrix application service -----------------------------------------------------------

DIGITS = PHONE[1:]


@pytest.fixture
async def asworld(tmp_path):
    """A homeserver with the bridge as its application service; customers write by SMS."""
    async with appservice_world(tmp_path, sms=FakeTwilio()) as (world, staff, room, _):
        yield world, staff, room


async def user_ids_seen(staff: MatrixUser, room: str) -> list[str]:
    """Every user id the room's members and the user directory show."""
    members = list(await staff.members(room))
    found = await staff.request(
        "POST",
        "/_matrix/client/v3/user_directory/search",
        json_body={"search_term": "customer", "limit": 50},
    )
    return members + [u["user_id"] for u in found["results"]]


async def test_a_customers_matrix_user_id_does_not_contain_their_phone_number(asworld):
    world, staff, room = asworld
    assert await world.sms.customer_texts(PHONE, "Is my table booked?") == 200
    said = await staff.wait_for_event(
        room,
        lambda e: e.get("sender", "").startswith("@customer_")
        and body_of(e) == "Is my table booked?",
        30,
    )
    puppet = said["sender"]
    assert DIGITS not in puppet
    assert [u for u in await user_ids_seen(staff, room) if DIGITS in u] == []

    assert (await command(world, f"user role {staff.user_id} admin")).ok
    [(contact_id,)] = await world.sql("select id from contacts")
    await staff.send_text(room, f"!contact forget #{contact_id} --confirm")
    await staff.wait_for(
        lambda: _left(staff, room, puppet), timeout=40, what="the customer's user leaving"
    )
    assert [u for u in await user_ids_seen(staff, room) if DIGITS in u] == []


async def _left(staff: MatrixUser, room: str, user: str) -> bool | None:
    return (await staff.members(room)).get(user) == "leave" or None
