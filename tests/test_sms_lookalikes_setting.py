"""`[sms] gsm_lookalikes` is read from bridge.toml or the environment, beside one sender or many."""

from __future__ import annotations

import pytest

from bridge.config import load_settings
from bridge.errors import ConfigError

SENDER = 'account_sid = "AC0123"\nauth_token = "twilio-auth-token-0123"\n'


def _load(tmp_path, toml: str, env: dict[str, str] | None = None):
    path = tmp_path / "bridge.toml"
    # SMS needs the public URL Twilio signs its webhooks over.
    path.write_text('[bridge]\npublic_url = "https://bridge.example.com"\n' + toml, "utf-8")
    return load_settings(path, env or {})


def test_it_is_off_unless_asked_for(tmp_path):
    settings = _load(tmp_path, f'[sms]\n{SENDER}from_number = "+14155550100"\n')
    assert settings.sms.gsm_lookalikes is False
    assert [a.from_number for a in settings.sms.accounts] == ["+14155550100"]


def test_beside_the_one_sender_it_belongs_to_the_section(tmp_path):
    toml = f'[sms]\n{SENDER}from_number = "+14155550100"\ngsm_lookalikes = true\n'
    settings = _load(tmp_path, toml)
    assert settings.sms.gsm_lookalikes is True
    assert len(settings.sms.accounts) == 1


def test_beside_several_senders(tmp_path):
    toml = (
        "[sms]\ngsm_lookalikes = true\n"
        f'[[sms.accounts]]\n{SENDER}from_number = "+14155550100"\n'
        f'[[sms.accounts]]\n{SENDER}messaging_service_sid = "MG0123"\n'
    )
    settings = _load(tmp_path, toml)
    assert settings.sms.gsm_lookalikes is True
    assert len(settings.sms.accounts) == 2


def test_from_the_environment(tmp_path):
    env = {
        "BRIDGE_SMS__ACCOUNT_SID": "AC0123",
        "BRIDGE_SMS__AUTH_TOKEN": "twilio-auth-token-0123",
        "BRIDGE_SMS__FROM_NUMBER": "+14155550100",
        "BRIDGE_SMS__GSM_LOOKALIKES": "true",
    }
    settings = _load(tmp_path, "", env)
    assert settings.sms.gsm_lookalikes is True and settings.sms.enabled


def test_on_a_sender_of_many_it_is_refused(tmp_path):
    toml = f'[[sms.accounts]]\n{SENDER}from_number = "+14155550100"\ngsm_lookalikes = true\n'
    with pytest.raises(ConfigError, match="gsm_lookalikes"):
        _load(tmp_path, toml)
