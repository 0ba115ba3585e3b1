"""A customer's name or text filled into a forwarded mail's headers cannot add headers or
recipients, and a mail that cannot be built fails once, for good, without blocking the next.
"""

from __future__ import annotations

import logging

import pytest

from tests.commands_kit import command
from tests.harness import eventually
from tests.rules_kit import Mailbox
from tests.world import start_world, stop_world

EVE = 7130101


@pytest.fixture
async def rig(tmp_path):
    mailbox = Mailbox()
    await mailbox.start()
    world = await start_world(tmp_path, sections={"mail": mailbox.settings()})
    yield world, mailbox
    await stop_world(world)
    await mailbox.stop()


async def add(world, line: str) -> None:
    reply = await command(world, f"rule add {line}")
    assert reply.ok, reply.text


async def test_a_line_break_in_the_customers_name_adds_no_header_or_recipient(rig):
    world, mailbox = rig
    await add(world, 'fwd always --do "mail: contracts@example.org | Message from {NICKNAME}"')
    await world.says(EVE, "Hello", first_name="Eve\r\nBcc: victim@example.org")

    await eventually(lambda: mailbox.mails, message="the mail")
    root = await world.thread_of(EVE)
    await eventually(
        lambda: any("Rule 'fwd'" in t for t in world.texts(root)), message="the rule line"
    )
    [mail] = mailbox.mails
    assert mailbox.recipients == [["contracts@example.org"]]
    assert mail["Bcc"] is None and mail.get_all("To") == ["contracts@example.org"]
    assert mail["Subject"] == "Message from Eve Bcc: victim@example.org"
    assert "victim" not in str(mailbox.recipients)


async def test_a_line_break_in_the_message_keeps_the_subject_on_one_line(rig):
    world, mailbox = rig
    await add(world, 'fwd always --do "mail: contracts@example.org | {MSG}"')
    await world.says(EVE, "Order 17\nCc: victim@example.org\u2028Reply-To: eve@evil.example")

    await eventually(lambda: mailbox.mails, message="the mail")
    [mail] = mailbox.mails
    assert mail["Subject"] == "Order 17 Cc: victim@example.org Reply-To: eve@evil.example"
    assert mail["Cc"] is None and mail["Reply-To"] is None
    assert mailbox.recipients == [["contracts@example.org"]]


async def test_a_mail_that_cannot_be_built_fails_once_and_the_next_goes_out(rig, caplog):
    world, mailbox = rig
    caplog.set_level(logging.INFO)
    # The address is made from the customer's name: a name with a comma would add a recipient.
    await add(world, 'fwd always --do "mail: {NICKNAME}@example.org | Hello"')
    await world.says(EVE, "first", first_name="eve,victim")
    root = await world.thread_of(EVE)
    failures = await world.notices(root, "the mail forward failed", message="the failure")
    assert len(failures) == 1 and "e-mail address" in failures[0]

    # The same conversation's next mail is not held up behind the broken one.
    await world.says(EVE, "second", first_name="eve")
    await eventually(lambda: mailbox.mails, message="the next mail")
    assert mailbox.recipients == [["eve@example.org"]]
    assert [t for t in world.texts(root) if "the mail forward failed" in t] == failures
    # Reported once: one line, no traceback, no retries.
    mail_lines = [r for r in caplog.records if "rule.mail" in r.getMessage()]
    assert len(mail_lines) == 1 and mail_lines[0].exc_info is None
    assert "will retry" not in caplog.text and "raised unexpectedly" not in caplog.text
