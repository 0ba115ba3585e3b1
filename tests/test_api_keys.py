"""API keys: `/apikey create|list|revoke` (admin), only a hash in the database, 401 without a
valid key, 403 when the key's role is too low, and keys managed through the API itself."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import select

from storage.models import Base
from tests.api_kit import Api, make_key
from tests.commands_kit import ADMIN, AGENT, MANAGER, command, services_of


@pytest.fixture
async def api(world):
    assert (await command(world, f"user role {MANAGER} manager")).ok
    return Api(world)


async def every_row(world) -> list[str]:
    def read(conn) -> list[str]:
        return [
            f"{table.name}: {row}"
            for table in Base.metadata.sorted_tables
            for row in conn.execute(select(table))
        ]

    return await services_of(world).db.run_read(read)


async def test_create_shows_the_key_once_privately_and_stores_only_its_hash(world, api):
    reply = await command(world, "apikey create crm agent")
    assert reply.ok and not reply.public
    key = next(word.strip("`") for word in reply.lines if word.startswith("`sbk_"))
    assert "only time the key is shown" in reply.text
    [(name, role, key_hash, prefix, created_by)] = await world.sql(
        "select name, role, key_hash, prefix, created_by from api_keys"
    )
    assert (name, role, created_by) == ("crm", "agent", ADMIN)
    assert key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert key.startswith(prefix) and len(prefix) == 12 and len(key) > 40
    assert not [row for row in await every_row(world) if key in row]
    listed = await command(world, "apikey list")
    assert "crm" in listed.text and prefix in listed.text and key not in listed.text
    answer = await api.get("/me", key=key)
    assert answer.status == 200
    assert answer.body["name"] == "crm" and answer.body["role"] == "agent"


async def test_only_admins_manage_keys(world):
    assert (await command(world, f"user role {MANAGER} manager")).ok
    for user in (MANAGER, AGENT):
        reply = await command(world, "apikey create crm agent", user=user)
        assert not reply.ok and "needs the admin role" in reply.title
    assert await world.sql("select count(*) from api_keys") == [(0,)]


async def test_create_is_refused_where_others_would_see_the_key(world):
    # A Matrix room others are in; (in Slack, the key is shown ephemerally even in a thread).
    in_matrix = await command(world, "apikey create crm agent", surface="matrix")
    assert not in_matrix.ok and "secret" in in_matrix.title
    assert "direct room with the bot" in in_matrix.text
    assert await world.sql("select count(*) from api_keys") == [(0,)]


async def test_bad_create_answers_the_usage(world):
    for line in ("apikey create crm", "apikey create crm owner", "apikey create 'a b' agent"):
        reply = await command(world, line)
        assert not reply.ok and "Usage: `/apikey create <name>" in reply.lines[0], line
    await make_key(world, "crm")
    again = await command(world, "apikey create crm manager")
    assert not again.ok and "active key named crm already" in again.title


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer sbk_not-a-key-at-all-000000000000"],
)
async def test_no_or_an_unknown_key_is_401(world, api, authorization):
    headers = {"Authorization": authorization} if authorization is not None else {}
    answer = await api.get("/contacts", headers=headers)
    assert answer.status == 401
    assert answer.error["code"] == "unauthorized"
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")


async def test_a_revoked_key_is_401_and_revoking_twice_says_so(world, api):
    key = await make_key(world, "crm")
    assert (await api.get("/contacts", key=key)).status == 200
    [(prefix,)] = await world.sql("select prefix from api_keys")
    reply = await command(world, f"apikey revoke {prefix}")
    assert reply.ok and "revoked" in reply.title
    answer = await api.get("/contacts", key=key)
    assert answer.status == 401 and answer.error["message"] == "this API key was revoked"
    again = await command(world, "apikey revoke #1")
    assert "was revoked already" in again.title
    unknown = await command(world, "apikey revoke sbk_zzzzzzzz")
    assert not unknown.ok and "No API key" in unknown.title
    assert "revoked" in (await command(world, "apikey list")).text


async def test_a_key_whose_role_is_too_low_is_403(world, api):
    agent = await make_key(world, "reader", "agent")
    manager = await make_key(world, "writer", "manager")
    refused = await api.post("/channels", key=agent, body={"name": "news"})
    assert refused.status == 403
    assert "needs a key with the manager role" in refused.error["message"]
    assert (await api.get("/api-keys", key=manager)).status == 403
    assert (await api.delete("/contacts/1", key=manager)).status == 403
    assert (await api.post("/channels", key=manager, body={"name": "news"})).status == 201
    assert await world.sql("select name from channels") == [("news",)]


async def test_last_use_is_written_at_most_once_a_minute(world, api):
    key = await make_key(world, "crm")
    assert await world.sql("select last_used_at from api_keys") == [(None,)]
    await api.get("/contacts", key=key)
    [(first,)] = await world.sql("select last_used_at from api_keys")
    assert first is not None
    await api.get("/contacts", key=key)
    assert await world.sql("select last_used_at from api_keys") == [(first,)]


async def test_admin_keys_manage_keys_through_the_api(world, api):
    admin = await make_key(world, "ops", "admin")
    created = await api.post("/api-keys", key=admin, body={"name": "shop", "role": "manager"})
    assert created.status == 201
    new_key = created.body["key"]
    assert created.body["api_key"]["role"] == "manager"
    me = await api.get("/me", key=new_key)
    assert me.body["name"] == "shop"
    duplicate = await api.post("/api-keys", key=admin, body={"name": "shop", "role": "agent"})
    assert duplicate.status == 409 and duplicate.error["code"] == "conflict"
    bad = await api.post("/api-keys", key=admin, body={"name": "shop", "role": "owner"})
    assert bad.status == 422 and bad.error["field"] == "role"
    listed = await api.get("/api-keys", key=admin)
    assert [k["name"] for k in listed.body["items"]] == ["ops", "shop"]
    revoked = await api.delete(f"/api-keys/{created.body['api_key']['id']}", key=admin)
    assert revoked.status == 200 and revoked.body["revoked_at"] is not None
    assert (await api.get("/me", key=new_key)).status == 401
    assert (await api.delete("/api-keys/999", key=admin)).status == 404


async def test_keys_and_kept_answers_on_every_database(database):
    """The storage of keys and kept answers, on SQLite and PostgreSQL."""
    from datetime import UTC, datetime, timedelta

    from storage.api_keys import new_key

    now = datetime.now(UTC)
    key = new_key()

    def write(tx):
        created = tx.api_keys.create_key(key=key, name="crm", role="agent", by="Ada", at=now)
        tx.api_keys.keep_answer(
            key_id=created.id,
            idem_key="k1",
            method="POST",
            path="/api/v1/contacts/12/messages",
            fingerprint="f" * 64,
            status=202,
            body="{}",
            at=now - timedelta(days=8),
        )
        tx.api_keys.keep_answer(
            key_id=created.id,
            idem_key="k2",
            method="POST",
            path="/api/v1/contacts/120/messages",
            fingerprint="f" * 64,
            status=202,
            body="{}",
            at=now,
        )
        return created

    created = await database.write_tx(write)
    assert created.prefix == key[:12] and created.revoked_at is None
    found = await database.read_tx(lambda tx: tx.api_keys.key_by_secret(key))
    assert found == created
    assert await database.read_tx(lambda tx: tx.api_keys.key_by_secret(key + "x")) is None
    assert await database.read_tx(lambda tx: tx.api_keys.keys_named(key[:8])) == [created]
    assert await database.read_tx(lambda tx: tx.api_keys.keys_named("#1")) == [created]
    assert await database.read_tx(lambda tx: tx.api_keys.keys_named("sbk_%")) == []
    kept = await database.read_tx(lambda tx: tx.api_keys.kept_answer(created.id, "k2"))
    assert kept is not None and kept.status == 202
    assert (
        await database.write_tx(lambda tx: tx.api_keys.forget_answers(now - timedelta(days=7))) == 1
    )
    # Contact 12's answer went with its age; contact 120's is not contact 12's.
    assert await database.write_tx(lambda tx: tx.api_keys.forget_contact_answers(12)) == 0
    assert await database.write_tx(lambda tx: tx.api_keys.forget_contact_answers(120)) == 1
    assert await database.write_tx(lambda tx: tx.api_keys.revoke_key(created.id, now))
    assert not await database.write_tx(lambda tx: tx.api_keys.revoke_key(created.id, now))
