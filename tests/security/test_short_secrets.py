"""A secret the bridge checks requests against (a webhook secret, a verify token, an app
secret, a bearer token) is refused at start when it is short enough to guess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bridge.config import load_settings
from bridge.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SHORT = "guessable-1234"  # 14 characters
LONG = "0123456789abcdef0123456789abcdef"

BASE = """
[bridge]
database = "sqlite+aiosqlite:///var/never-opened.db"
"""

# (the key as the message names it, the settings that give it a short value)
CASES = [
    (
        "telegram.webhook_secret",
        f'[telegram]\ntoken = "1:x"\nmode = "webhook"\nwebhook_secret = "{SHORT}"\n',
    ),
    (
        "slack.signing_secret",
        f'[slack]\nbot_token = "xoxb-1"\nchannel = "C1"\nsigning_secret = "{SHORT}"\n',
    ),
    ("metrics.token", f'[metrics]\ntoken = "{SHORT}"\n'),
    ("stats.api_key", f'[stats]\napi_key = "{SHORT}"\n'),
    (
        "matrix.hs_token",
        '[matrix]\nhomeserver = "http://hs"\nuser_id = "@b:hs"\nroom = "!r:hs"\n'
        f'mode = "appservice"\nas_token = "{LONG}"\nhs_token = "{SHORT}"\n',
    ),
    *(
        (
            f"whatsapp.{key}",
            '[whatsapp]\nphone_number_id = "1"\naccess_token = "EAAG"\n'
            + "".join(
                f'{k} = "{SHORT if k == key else LONG}"\n' for k in ("app_secret", "verify_token")
            ),
        )
        for key in ("app_secret", "verify_token")
    ),
    *(
        (
            f"messenger.{key}",
            '[messenger]\npage_id = "3"\npage_token = "EAAG"\n'
            + "".join(
                f'{k} = "{SHORT if k == key else LONG}"\n' for k in ("app_secret", "verify_token")
            ),
        )
        for key in ("app_secret", "verify_token")
    ),
    (
        "sms.auth_token",
        f'[sms]\naccount_sid = "AC1"\nauth_token = "{SHORT}"\nfrom_number = "+15005550006"\n',
    ),
]


@pytest.mark.parametrize(("key", "section"), CASES, ids=[key for key, _ in CASES])
def test_a_short_checked_secret_stops_the_start_naming_the_key(tmp_path, key, section):
    path = tmp_path / "bridge.toml"
    path.write_text(BASE + section)
    with pytest.raises(ConfigError) as refused:
        load_settings(path, env={})
    assert refused.value.key == key
    assert "at least" in str(refused.value)


def test_tokens_the_bridge_only_sends_may_be_short(tmp_path):
    # Bot and access tokens are issued by the platforms, which check them, not the bridge.
    path = tmp_path / "bridge.toml"
    path.write_text(
        BASE
        + '[telegram]\ntoken = "1:x"\nmode = "polling"\n'
        + f'[whatsapp]\nphone_number_id = "1"\naccess_token = "EAAG"\napp_secret = "{LONG}"\n'
        + f'verify_token = "{LONG}"\n'
    )
    settings = load_settings(path, env={})
    assert settings.telegram.token is not None


def test_run_check_names_the_short_secret(tmp_path):
    path = tmp_path / "bridge.toml"
    path.write_text(BASE + CASES[0][1])
    done = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "--config", str(path), "check"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "telegram.webhook_secret" in done.stdout + done.stderr
    assert "at least 16" in done.stdout + done.stderr


def test_a_short_secret_from_the_environment_is_named_too(tmp_path):
    path = tmp_path / "bridge.toml"
    path.write_text(BASE)
    env = {"BRIDGE_METRICS__TOKEN": SHORT}
    with pytest.raises(ConfigError, match="metrics.token"):
        load_settings(path, env=env)
