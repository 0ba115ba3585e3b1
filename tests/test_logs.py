"""Log output: JSON lines for collectors, text for people, and never a secret of the settings."""

from __future__ import annotations

import io
import json
import logging
from datetime import datetime

from bridge.config import Settings
from bridge.logs import MASK, JsonFormatter, Masker, TextFormatter, handler, secrets_of
from tests.harness import eventually
from tests.world import start_world, stop_world


class _Keep(logging.Handler):
    """Keeps the records as they are, to be formatted afterwards."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_debug_json_log_of_a_conversation_holds_no_secret(tmp_path):
    keep = _Keep()
    root = logging.getLogger()
    level = root.level
    root.addHandler(keep)
    root.setLevel(logging.DEBUG)
    try:
        world = await start_world(
            tmp_path,
            log_level="DEBUG",
            log_format="json",
            sections={
                "metrics": {"token": "metrics-token-0123456789"},
                "stats": {"api_key": "stats-api-key-0123456789abcdef"},
            },
        )
        try:
            await world.says(111, "Hello")
            root_msg = await world.thread_of(111)
            await world.slack.agent_says(root_msg.channel, root_msg.ts, "Hi there")
            await eventually(lambda: world.tg.messages_to(111), message="the reply")
            settings = world.bridge.settings
        finally:
            await stop_world(world)
    finally:
        root.removeHandler(keep)
        root.setLevel(level)

    secrets = secrets_of(settings)
    assert len(secrets) >= 6  # bot token, webhook secret, Slack token and secret, two keys
    # Nothing logs a secret in the first place, masked or not.
    raw = "\n".join(r.getMessage() for r in keep.records)
    assert keep.records and not [s for s in secrets if s in raw]

    out = io.StringIO()
    json_handler = handler(settings, out)
    for record in keep.records:
        json_handler.handle(record)
    lines = out.getvalue().splitlines()
    assert len(lines) == len(keep.records)
    for text in lines:
        entry = json.loads(text)
        assert {"time", "level", "logger", "message"} <= entry.keys()
        assert entry["time"].endswith("Z")
        assert datetime.fromisoformat(entry["time"].replace("Z", "+00:00")).utcoffset() is not None
    assert any(json.loads(t)["level"] == "DEBUG" for t in lines)
    assert not [s for s in secrets if s in out.getvalue()]


def test_secrets_are_masked_in_messages_and_exceptions(tmp_path):
    settings = Settings.model_validate(
        {
            "bridge": {
                "database": "postgresql+asyncpg://bridge:db-password-123@localhost/bridge",
                "log_format": "json",
            },
            "telegram": {"token": "123456:SECRET-bot-token", "mode": "polling"},
        }
    )
    out = io.StringIO()
    log = logging.getLogger("tests.logs.masking")
    json_handler = handler(settings, out)
    log.addHandler(json_handler)
    log.propagate = False
    try:
        url = "https://api.telegram.org/bot123456:SECRET-bot-token/getMe"
        log.warning("calling %s", url)
        try:
            raise RuntimeError("connect to bridge:db-password-123@localhost failed")
        except RuntimeError:
            log.exception("database down")
    finally:
        log.removeHandler(json_handler)
        log.propagate = True
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["message"] == f"calling https://api.telegram.org/bot{MASK}/getMe"
    assert first["level"] == "WARNING" and first["logger"] == "tests.logs.masking"
    assert "exception" not in first
    assert "RuntimeError" in second["exception"]
    assert "db-password-123" not in out.getvalue() and "SECRET-bot-token" not in out.getvalue()


def test_text_lines_are_masked_too():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "token %s", ("abcdefgh123",), None)
    mask = Masker(["abcdefgh123", "short"])
    assert TextFormatter(mask).format(record).endswith(f"INFO x: token {MASK}")
    # Secrets shorter than 8 characters are left alone: masking them would garble words.
    assert Masker(["short"])("a short word") == "a short word"
    assert json.loads(JsonFormatter(mask).format(record))["message"] == f"token {MASK}"
