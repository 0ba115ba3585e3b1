"""Settings: defaults, the environment overlay, and errors that name the key to fix."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bridge.config import load_settings
from bridge.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_no_file_gives_working_defaults(tmp_path):
    settings = load_settings(tmp_path / "missing.toml", env={})
    assert settings.bridge.database == "sqlite+aiosqlite:///var/bridge.db"
    assert settings.bridge.listen == "127.0.0.1:8080"
    assert settings.bridge.note_prefix == "//"
    assert not settings.telegram.enabled and not settings.slack.enabled


def test_environment_overrides_the_file(tmp_path):
    path = tmp_path / "bridge.toml"
    path.write_text('[bridge]\nnote_prefix = "##"\n[slack]\nchannel = "C1"\n')
    settings = load_settings(
        path,
        env={
            "BRIDGE_BRIDGE__NOTE_PREFIX": "%%",
            "BRIDGE_SLACK__BOT_TOKEN": "xoxb-1",
            "BRIDGE_SLACK__SIGNING_SECRET": "0123456789abcdef0123456789abcdef",
            "BRIDGE_BRIDGE__ADMINS": "U1, @a:b",
        },
    )
    assert settings.bridge.note_prefix == "%%"
    assert settings.slack.bot_token is not None
    assert settings.slack.bot_token.get_secret_value() == "xoxb-1"
    assert settings.bridge.admins == ("U1", "@a:b")


@pytest.mark.parametrize(
    ("toml", "env", "key"),
    [
        ('[bridge]\nlisten = "nonsense"\n', {}, "bridge.listen"),
        ('[bridge]\ndatabase = "mysql://x"\n', {}, "bridge.database"),
        ('[slack]\nbot_tokn = "xoxb"\n', {}, "slack.bot_tokn"),
        ("", {"BRIDGE_TELEGRAM__RATE_PER_CHAT": "fast"}, "telegram.rate_per_chat"),
        (
            '[slack]\nbot_token = "xoxb"\nsigning_secret = "0123456789abcdef0123"\n',
            {},
            "slack.channel",
        ),
        ('[slack]\nbot_token = "xoxb"\nchannel = "C1"\n', {}, "slack.signing_secret"),
        ('[telegram]\ntoken = "1:a"\nmode = "webhook"\n', {}, "telegram.webhook_secret"),
        ('[telegram]\nwebhook_secret = "has spaces"\n', {}, "telegram.webhook_secret"),
        ("[bridge\n", {}, "bridge.toml"),
    ],
)
def test_bad_setting_names_its_key(tmp_path, toml, env, key):
    path = tmp_path / "bridge.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, env=env)
    assert key in str(caught.value)


def test_env_error_says_which_variable(tmp_path):
    with pytest.raises(ConfigError, match="BRIDGE_TELEGRAM__RATE_PER_CHAT"):
        load_settings(tmp_path / "none.toml", env={"BRIDGE_TELEGRAM__RATE_PER_CHAT": "fast"})


def test_secrets_do_not_show_in_settings_repr(tmp_path):
    settings = load_settings(
        tmp_path / "none.toml",
        env={"BRIDGE_TELEGRAM__TOKEN": "123:very-secret-token"},
    )
    assert "very-secret-token" not in repr(settings)


def test_run_refuses_bad_settings_with_the_key(tmp_path):
    path = tmp_path / "bridge.toml"
    path.write_text('[bridge]\nlisten = "nowhere"\n')
    proc = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert "bridge.listen" in proc.stderr


def test_example_settings_file_loads_and_documents_every_key():
    example = ROOT / "bridge.example.toml"
    assert load_settings(example, env={}) is not None
    text = example.read_text()
    from typing import get_args

    from bridge.config import Route, Settings

    for section, field in Settings.model_fields.items():
        model = Route if section == "routes" else field.annotation
        keys = dict(model.model_fields)  # type: ignore[union-attr]
        if "accounts" in keys:  # [whatsapp] etc.: the keys of one account, and the section's
            keys.update(get_args(keys.pop("accounts").annotation)[0].model_fields)
        for key in keys:
            assert f"{key} =" in text, f"{section}.{key} is not documented in the example"
