"""The bridge checks X-Twilio-Signature as Twilio's own helper library does (`RequestValidator`
of the `twilio` package): what it signs is accepted, a forged or altered request is refused,
and the fake Twilio signs what the library accepts."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer, unused_port
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import MultiDict
from pydantic import SecretStr
from twilio.request_validator import RequestValidator

from bridge.config import SmsAccount
from connectors.sms import WEBHOOK_PATH, TwilioWebhook
from connectors.sms_signature import signature
from tests import connector_kit
from tests.fakes.twilio import CORPUS, FakeTwilio, sample

http, sink = connector_kit.http, connector_kit.sink

TOKEN = "oracle-auth-token-0123"
NUMBER = "+15558675310"
URLS = [
    "https://bridge.example.com/webhooks/sms",
    "https://bridge.example.com:8443/webhooks/sms?account=1&b=%20x",
    "http://127.0.0.1:8080/webhooks/sms/status",
]
SAMPLES = sorted(path.stem for path in CORPUS.glob("*.form"))


@pytest.mark.parametrize("url", URLS)
@pytest.mark.parametrize("name", SAMPLES)
def test_our_signature_is_twilios_on_every_sample(name, url):
    params = sample(name)
    expected = RequestValidator(TOKEN).compute_signature(url, params)
    assert signature(TOKEN, url, params.items()) == expected
    assert FakeTwilio(auth_token=TOKEN).sign(url, params) == expected


def test_repeated_parameters_are_signed_as_twilio_signs_them():
    pairs = [
        ("MediaUrl", "https://b.example/2"),
        ("Body", "x"),
        ("MediaUrl", "https://a.example/1"),
    ]
    expected = RequestValidator(TOKEN).compute_signature(URLS[0], MultiDict(pairs))
    assert signature(TOKEN, URLS[0], pairs) == expected


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12),
        st.text(st.characters(blacklist_categories=("Cs",)), max_size=40),
        max_size=8,
    )
)
def test_any_form_is_signed_as_twilio_signs_it(params):
    assert signature(TOKEN, URLS[1], params.items()) == RequestValidator(TOKEN).compute_signature(
        URLS[1], params
    )


def test_the_fake_signs_what_twilios_validator_accepts():
    fake = FakeTwilio(auth_token=TOKEN)
    params = sample("inbound_sms")
    validator = RequestValidator(TOKEN)
    assert validator.validate(URLS[0], params, fake.sign(URLS[0], params))
    assert not validator.validate(
        URLS[0], {**params, "Body": "changed"}, fake.sign(URLS[0], params)
    )
    assert not RequestValidator("another-token").validate(
        URLS[0], params, fake.sign(URLS[0], params)
    )


PUBLIC = "http://bridge.example.com"


@pytest.fixture
async def local(sink):
    """The SMS webhook on a local port behind the public URL PUBLIC, for one number whose auth
    token is TOKEN; the address requests really go to."""
    port = unused_port()
    account = SmsAccount(
        account_sid="AC" + "0" * 32, auth_token=SecretStr(TOKEN), from_number=NUMBER
    )
    app = web.Application()
    app.add_routes(TwilioWebhook([account], PUBLIC, sink).routes())
    async with TestServer(app, port=port):
        yield f"http://127.0.0.1:{port}"


async def _post(http, local: str, params: dict[str, str], signed: str) -> int:
    headers = {
        "X-Twilio-Signature": signed,
        "Content-Type": "application/x-www-form-urlencoded; charset=UTF-8",
    }
    async with http.post(local + WEBHOOK_PATH, data=urlencode(params), headers=headers) as resp:
        return resp.status


def _signed(url: str, params: dict[str, str], token: str = TOKEN) -> str:
    return RequestValidator(token).compute_signature(url, params)


async def test_a_request_twilios_library_signs_is_accepted(local, http, sink):
    params = sample("inbound_sms_unicode")
    assert await _post(http, local, params, _signed(PUBLIC + WEBHOOK_PATH, params)) == 200
    assert [event.text for event in sink.events] == [params["Body"]]


async def test_signed_over_the_url_with_its_default_port_is_accepted(local, http, sink):
    # Twilio's validator accepts the URL with and without the scheme's default port, because
    # Twilio signs it either way: so does the bridge.
    url = f"{PUBLIC}:80{WEBHOOK_PATH}"
    params = sample("inbound_sms")
    assert RequestValidator(TOKEN).validate(PUBLIC + WEBHOOK_PATH, params, _signed(url, params))
    assert await _post(http, local, params, _signed(url, params)) == 200
    assert len(sink.events) == 1


async def test_a_forged_request_is_refused(local, http, sink):
    url = PUBLIC + WEBHOOK_PATH
    params = sample("inbound_sms")
    assert await _post(http, local, params, _signed(url, params, "not-the-auth-token")) == 403
    signed = _signed(url, params)
    assert await _post(http, local, {**params, "Body": "Send me a refund"}, signed) == 403
    assert await _post(http, local, {**params, "From": "+15550009999"}, signed) == 403
    assert await _post(http, local, params, _signed(PUBLIC + "/elsewhere", params)) == 403
    assert sink.events == []
    # The same request, signed right, goes through: the refusals were for the forgery.
    assert await _post(http, local, params, signed) == 200
