"""answer-file: the file is read whole (up to the messengers' limit), a rule refused by any
check keeps no file (the file is fetched last), and the errors past the guard read the same
whatever answered, so that they do not map which internal ports are open."""

from __future__ import annotations

import os
import re

import pytest

from tests.api_kit import Api, make_key
from tests.commands_kit import MANAGER, command
from tests.harness import eventually
from tests.security.outbound_kit import guarded_rig
from tests.world import free_port

ANNA = 9150001
MIB = 1024 * 1024


@pytest.fixture
async def rig(tmp_path):
    closed = free_port()
    async with guarded_rig(tmp_path, allow=[f"127.0.0.1:{closed}"]) as running:
        world, internal, files, _ = running
        yield world, internal, files, closed


async def test_a_one_mib_file_is_stored_and_sent_whole(rig):
    world, _, files, _ = rig
    data = os.urandom(MIB)
    files.files["manual.pdf"] = (data, "application/pdf")
    url = files.url("/files/manual.pdf")
    reply = await command(
        world, f'rule add manual contain "manual" --do "answer-file: {url}"', user=MANAGER
    )
    assert reply.ok, reply.text
    [(stored,)] = await world.sql("select data from rule_files")
    assert bytes(stored) == data
    await world.says(ANNA, "the manual please", first_name="Anna")
    sent = await eventually(
        lambda: [m for m in world.tg.messages_to(ANNA) if m.file_bytes], message="the file"
    )
    assert sent[0].file_bytes == data


async def test_a_file_over_the_limit_is_refused(rig):
    world, _, files, _ = rig
    files.files["huge.bin"] = (b"\0" * (16 * MIB + 1), "application/octet-stream")
    url = files.url("/files/huge.bin")
    reply = await command(world, f'rule add huge always --do "answer-file: {url}"', user=MANAGER)
    assert not reply.ok and "larger than 16 MB" in reply.text, reply.text
    assert await world.sql("select count(*) from rule_files") == [(0,)]


async def test_a_rule_refused_by_a_later_check_keeps_no_file(rig):
    world, _, files, _ = rig
    files.files["prices.pdf"] = (b"%PDF-1.4 prices", "application/pdf")
    url = files.url("/files/prices.pdf")
    refused = [
        f'bad1 always --do "answer-file: {url}" --do "join: no-such-channel"',
        f'bad2 regexp "(?<=x)y" --do "answer-file: {url}"',
        f'bad3 always --do "answer-file: {url}" --do "mail: not-an-address"',
    ]
    for line in refused:
        reply = await command(world, f"rule add {line}", user=MANAGER)
        assert not reply.ok, (line, reply.text)
    ok = await command(world, 'rule add taken always --do "answer: hi"', user=MANAGER)
    assert ok.ok, ok.text
    again = await command(world, f'rule add taken always --do "answer-file: {url}"', user=MANAGER)
    assert not again.ok and "exists" in again.text, again.text
    edit = await command(
        world, f'rule edit taken --do "answer-file: {url}" --do "join: nowhere"', user=MANAGER
    )
    assert not edit.ok, edit.text
    api = Api(world)
    key = await make_key(world, "editor", "manager")
    body = {
        "name": "api-bad",
        "keyword_type": "always",
        "actions": [
            {"do": "answer-file", "url": url},
            {"do": "join", "target": "no-such-channel"},
        ],
    }
    assert (await api.post("/rules", key=key, body=body)).status == 422
    assert await world.sql("select count(*) from rule_files") == [(0,)]
    assert files.gets == []  # not even fetched


def _without_urls(text: str) -> str:
    return re.sub(r"https?://\S+", "<url>", text)


async def test_fetch_errors_do_not_tell_which_internal_ports_answer(rig):
    world, internal, files, closed = rig
    # Past the guard (allow-listed): a closed port, a 404 and a 405 read the same.
    answers = []
    for number, url in enumerate(
        [
            f"http://127.0.0.1:{closed}/files/missing.pdf",
            files.url("/files/missing.pdf"),
            files.url("/nothing-here"),
        ]
    ):
        reply = await command(
            world, f'rule add e{number} always --do "answer-file: {url}"', user=MANAGER
        )
        assert not reply.ok
        answers.append(_without_urls(reply.text))
    assert answers[0] == answers[1] == answers[2], answers
    assert "could not be fetched" in answers[0]
    assert not re.search(r"\b(404|405|500|Client\w*Error|refused)\b", answers[0]), answers
    # Before the guard: an open and a closed loopback port get the same refusal.
    opened = await command(
        world, f'rule add o always --do "answer-file: {internal.url("/x")}"', user=MANAGER
    )
    shut = await command(
        world,
        f'rule add s always --do "answer-file: http://127.0.0.1:{free_port()}/x"',
        user=MANAGER,
    )
    assert _without_urls(opened.text) == _without_urls(shut.text)
    assert "127.0.0.1 is a loopback address" in opened.text
    assert internal.requests == []
