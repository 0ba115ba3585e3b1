"""`python run.py check`: the settings, the database's schema, and one harmless authenticated
call per configured platform, one line each; exit 0 only when everything passed."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from storage.db import Database
from tests.fakes.messenger import FakeMessenger
from tests.fakes.slack import FakeSlack
from tests.fakes.telegram import FakeTelegram
from tests.fakes.twilio import FakeTwilio
from tests.fakes.whatsapp import FakeWhatsApp
from tests.rules_kit import Mailbox

ROOT = Path(__file__).resolve().parent.parent


def _toml(data: dict[str, Any]) -> str:
    """A settings file: plain tables, and [[section.accounts]] for lists of tables."""
    lines: list[str] = []
    for section, table in data.items():
        plain = {k: v for k, v in table.items() if not isinstance(v, list)}
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {json.dumps(value)}" for key, value in plain.items())
        for key, value in table.items():
            if isinstance(value, list):
                for entry in value:
                    lines.append(f"[[{section}.{key}]]")
                    lines.extend(f"{k} = {json.dumps(v)}" for k, v in entry.items())
    return "\n".join(lines) + "\n"


async def _check(config: Path) -> tuple[int, dict[str, str], str]:
    """Run the command; its exit status, the line of each check by name, and stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "run.py"),
        "check",
        "--config",
        str(config),
        cwd=str(config.parent),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    lines = {line.split()[0]: line for line in out.decode().splitlines() if line.strip()}
    assert proc.returncode is not None
    return proc.returncode, lines, err.decode()


@pytest.fixture
async def platforms():
    fakes = {
        "tg": FakeTelegram(),
        "slack": FakeSlack(),
        "wa": FakeWhatsApp(),
        "fb": FakeMessenger(),
        "sms": FakeTwilio(),
    }
    mail = Mailbox()
    for fake in fakes.values():
        await fake.start()
    await mail.start()
    fakes["mail"] = mail
    yield fakes
    await mail.stop()
    for name, fake in fakes.items():
        if name != "mail":
            await fake.stop()


def _settings(tmp_path: Path, f: dict[str, Any], **telegram: Any) -> dict[str, Any]:
    wa, fb, sms = f["wa"], f["fb"], f["sms"]
    return {
        "bridge": {
            "database": f"sqlite+aiosqlite:///{tmp_path / 'bridge.db'}",
            "public_url": "https://bridge.example.org",
        },
        "telegram": {
            "token": f["tg"].token,
            "api_base": f["tg"].base_url,
            "webhook_secret": "check-secret-0123456789",
            **telegram,
        },
        "slack": {
            "bot_token": f["slack"].bot_token,
            "signing_secret": f["slack"].signing_secret,
            "channel": "C0001",
            "api_base": f["slack"].base_url,
        },
        "whatsapp": {
            "accounts": [
                {
                    "phone_number_id": pnid,
                    "access_token": wa.access_token,
                    "app_secret": wa.app_secret,
                    "verify_token": wa.verify_token,
                    "api_base": wa.base_url,
                }
                for pnid in wa.phone_number_ids
            ]
        },
        "messenger": {
            "accounts": [
                {
                    "page_id": page,
                    "page_token": fb.page_token,
                    "app_secret": fb.app_secret,
                    "verify_token": fb.verify_token,
                    "api_base": fb.base_url,
                }
                for page in fb.page_ids
            ]
        },
        "sms": {
            "accounts": [
                {
                    "account_sid": sms.account_sid,
                    "auth_token": sms.auth_token,
                    "from_number": number,
                    "api_base": sms.base_url,
                }
                for number in sms.numbers
            ]
        },
        "mail": f["mail"].settings(),
    }


async def test_everything_reachable_passes_and_says_what_it_found(tmp_path, platforms):
    f = platforms
    # The database is one revision behind: reported, and not a failure (the start migrates).
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'bridge.db'}")
    state = await db.schema_state()
    previous = ([None, *state.pending])[-2]
    await db.migrate(previous)
    await db.close()
    config = tmp_path / "bridge.toml"
    config.write_text(_toml(_settings(tmp_path, f)))

    code, lines, err = await _check(config)

    assert code == 0, (lines, err)
    assert all(" ok " in line for line in lines.values()), lines
    assert str(config) in lines["settings"]
    assert f"behind by 1 ({state.head})" in lines["database"]
    assert "@test_bot" in lines[f"telegram:{f['tg'].bot_id}"]
    assert "team" in lines["slack"]
    assert "Test Business" in lines[f"whatsapp:{f['wa'].phone_number_ids[0]}"]
    assert "Test Page" in lines[f"messenger:{f['fb'].page_ids[0]}"]
    assert "Test Account" in lines[f"sms:{f['sms'].numbers[0]}"]
    assert f"127.0.0.1:{f['mail'].port} (no TLS)" in lines["mail"]
    # Nothing was sent to anyone, and nothing was set up on a platform.
    assert f["tg"].count("getMe") == 1 and f["tg"].count("setWebhook") == 0
    assert not f["tg"].sent and not f["wa"].sent and not f["fb"].sent
    assert not f["mail"].mails
    # No secret is printed.
    everything = "\n".join(lines.values()) + err
    assert f["tg"].token not in everything and f["slack"].bot_token not in everything


async def test_a_wrong_telegram_token_fails_that_line_with_the_reason(tmp_path, platforms):
    f = platforms
    config = tmp_path / "bridge.toml"
    config.write_text(_toml(_settings(tmp_path, f, token="999999:not-the-token")))

    code, lines, err = await _check(config)

    assert code == 1
    telegram = lines["telegram:999999"]
    assert "FAILED" in telegram and "the bot token was rejected" in telegram
    assert "not-the-token" not in telegram + err
    others = [line for name, line in lines.items() if name != "telegram:999999"]
    assert others and all(" ok " in line for line in others), lines
    assert "no database at" in lines["database"]
    assert not (tmp_path / "bridge.db").exists()  # a check creates nothing


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('[bridge]\nlisten = "nowhere"\n', "bridge.listen"),
        ('[telegram]\ntoken = "1:a"\nmode = "webhook"\n', "telegram.webhook_secret"),
        ("[bridge\n", "is not valid TOML"),
    ],
)
async def test_a_bad_settings_file_is_named_with_the_key(tmp_path, text, words):
    config = tmp_path / "bridge.toml"
    config.write_text(text)
    code, lines, _ = await _check(config)
    assert code == 1
    assert list(lines) == ["settings"]
    assert "FAILED" in lines["settings"] and words in lines["settings"]
    assert str(config) in lines["settings"]


async def test_matrix_bot_is_checked_with_its_token_or_its_password(tmp_path, synapse):
    from bridge.check import run_checks
    from bridge.config import Settings
    from tests.matrix_user import MatrixUser

    password = "bot-password-for-check"
    bot = await MatrixUser.register(synapse, prefix="checkbot", password=password)
    server = bot.user_id.partition(":")[2]
    base = {
        "bridge": {"database": f"sqlite+aiosqlite:///{tmp_path / 'bridge.db'}"},
        "matrix": {"homeserver": synapse.base_url, "user_id": bot.user_id, "room": f"!r:{server}"},
    }

    async def matrix_line(**matrix: str):
        settings = Settings.model_validate({**base, "matrix": {**base["matrix"], **matrix}})
        settings.check()
        [outcome] = [o for o in await run_checks(settings) if o.name == "matrix"]
        return outcome

    with_token = await matrix_line(access_token=bot.access_token)
    assert with_token.ok and bot.user_id in with_token.detail
    with_password = await matrix_line(password=password)
    assert with_password.ok and bot.user_id in with_password.detail
    wrong = await matrix_line(access_token="syt_not_a_token_of_anyone")
    assert not wrong.ok and "M_UNKNOWN_TOKEN" in wrong.detail
    await bot.close()


async def test_matrix_rooms_are_checked_for_end_to_end_encryption(tmp_path, synapse):
    from tests.matrix_user import MatrixUser
    from tests.test_matrix_encrypted_rooms import encrypt

    bot = await MatrixUser.register(synapse, prefix="checkbot")
    staff = await MatrixUser.register(synapse, prefix="checkstaff")
    plain = await staff.create_room("support", invite=[bot.user_id])
    secret = await staff.create_room("encrypted support", invite=[bot.user_id])
    await encrypt(staff, secret)
    for room in (plain, secret):
        await bot.join(room)
    invited = await staff.create_room("not joined yet", invite=[bot.user_id])
    settings = {
        "bridge": {"database": f"sqlite+aiosqlite:///{tmp_path / 'bridge.db'}"},
        "matrix": {
            "homeserver": synapse.base_url,
            "user_id": bot.user_id,
            "access_token": bot.access_token,
            "room": secret,
        },
    }
    # A route's room is checked as the default room is.
    route = "".join(
        f'[[routes]]\nplatform = "{platform}"\nmatrix_room = "{room}"\n'
        for platform, room in (("telegram", plain), ("whatsapp", invited))
    )
    config = tmp_path / "bridge.toml"
    config.write_text(_toml(settings) + route)
    code, lines, _ = await _check(config)
    assert code == 1
    assert lines["matrix"].split()[1] == "ok"
    mismatch = lines[f"matrix:{secret}"]
    assert "FAILED" in mismatch
    assert f"{secret} is end-to-end encrypted; set [matrix] encryption = true" in mismatch
    assert lines[f"matrix:{plain}"].split()[1:] == [
        "ok",
        "not",
        "encrypted;",
        "[matrix]",
        "encryption",
        "off",
    ]
    # The start joins a room the bot is invited to; until then its state cannot be read.
    assert lines[f"matrix:{invited}"].split()[1] == "ok"
    assert "encryption is not known" in lines[f"matrix:{invited}"]

    settings["matrix"]["encryption"] = True
    config.write_text(_toml(settings) + route)
    code, lines, _ = await _check(config)
    assert "end-to-end encrypted; [matrix] encryption on" in lines[f"matrix:{secret}"]
    assert lines[f"matrix:{secret}"].split()[1] == "ok"
    await staff.close()
    await bot.close()
