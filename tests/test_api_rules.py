"""Chatbot rules through the API, with `/rule add`'s checks: a manager creates, changes,
switches and deletes rules, which fire at once; a pattern RE2 refuses, an unknown
placeholder, an unknown channel are 422 and save nothing; `POST /rules/test` says what would
fire, for the stored rules and for a rule not saved yet."""

from __future__ import annotations

import pytest

from tests.api_kit import Api, make_key
from tests.commands_kit import AGENT, MANAGER, command
from tests.harness import eventually
from tests.rules_kit import Endpoint

ANNA = 6280001

HOURS = {
    "name": "opening-hours",
    "keyword_type": "contain",
    "pattern": "open, hours",
    "platforms": ["telegram", "whatsapp"],
    "limit": "every",
    "limit_seconds": 86400,
    "priority": 5,
    "actions": [{"do": "answer", "text": "We open at 8, {NICKNAME}."}],
}


@pytest.fixture
async def api(world):
    assert (await command(world, f"user role {MANAGER} manager")).ok
    return Api(world)


@pytest.fixture
async def keys(world):
    return {
        "agent": await make_key(world, "reader", "agent"),
        "manager": await make_key(world, "editor", "manager"),
    }


async def test_create_fires_at_once_and_is_the_commands_rule(world, api, keys):
    assert (await api.post("/rules", key=keys["agent"], body=HOURS)).status == 403
    created = await api.post("/rules", key=keys["manager"], body=HOURS)
    assert created.status == 201, created.body
    rule = created.body
    assert rule["name"] == "opening-hours" and rule["keyword_type"] == "contain"
    assert rule["platforms"] == ["telegram", "whatsapp"] and rule["hours"] is None
    assert rule["days"] == ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    assert rule["limit"] == "every" and rule["limit_seconds"] == 86400
    assert rule["enabled"] is True and rule["created_by"] == "editor (API)"
    assert rule["actions"] == [
        {
            "do": "answer",
            "kind": "autoAnswer",
            "target": None,
            "text": "We open at 8, {NICKNAME}.",
            "subject": None,
            "file_id": None,
            "file_name": None,
        }
    ]
    assert [h["change"] for h in rule["history"]] == ["add"]
    listed = await command(world, "rule list", user=AGENT)
    assert "`opening-hours`" in listed.lines[0] and "once every 1d" not in listed.lines[0]
    await world.says(ANNA, "Are you open today?", first_name="Anna", last_name="Schmidt")
    await eventually(lambda: world.tg.messages_to(ANNA), message="the automatic answer")
    assert [m.text for m in world.tg.messages_to(ANNA)] == ["We open at 8, Anna Schmidt."]
    twice = await api.post("/rules", key=keys["manager"], body=HOURS)
    assert twice.status == 409 and twice.error["code"] == "conflict"
    page = await api.get("/rules", key=keys["agent"])
    assert [r["id"] for r in page.body["items"]] == [rule["id"]]
    assert page.body["items"][0] == {k: v for k, v in rule.items() if k != "history"}


async def test_change_switch_and_delete(world, api, keys):
    rule = (await api.post("/rules", key=keys["manager"], body=HOURS)).body
    path = f"/rules/{rule['id']}"
    changed = await api.patch(
        path,
        key=keys["manager"],
        body={"hours": "18:00-08:00", "days": ["mon", "tue", "wed", "thu", "fri"]},
    )
    assert changed.status == 200, changed.body
    assert changed.body["hours"] == "18:00-08:00"
    assert changed.body["days"] == ["mon", "tue", "wed", "thu", "fri"]
    assert changed.body["pattern"] == "open, hours" and changed.body["priority"] == 5
    replaced = await api.patch(
        path,
        key=keys["manager"],
        body={"hours": None, "limit": "once", "actions": [{"do": "ignore"}]},
    )
    assert replaced.body["hours"] is None and replaced.body["limit"] == "once"
    assert replaced.body["limit_seconds"] is None
    assert [a["kind"] for a in replaced.body["actions"]] == ["doNothing"]
    shown = await command(world, "rule show opening-hours", user=AGENT)
    assert "Does: ignore" in shown.lines
    no_pause = await api.patch(path, key=keys["manager"], body={"limit": "every"})
    assert no_pause.status == 422 and no_pause.error["field"] == "limit_seconds"
    assert (await api.patch(path, key=keys["manager"], body={})).status == 422
    assert (await api.post(f"{path}/disable", key=keys["agent"])).status == 403
    off = await api.post(f"{path}/disable", key=keys["manager"])
    assert off.status == 200 and off.body["enabled"] is False
    assert "(disabled)" in (await command(world, "rule list")).lines[0]
    again = await api.post(f"{path}/disable", key=keys["manager"])
    assert again.status == 200 and again.body["enabled"] is False
    on = await api.post(f"{path}/enable", key=keys["manager"])
    assert on.body["enabled"] is True
    assert [h["change"] for h in on.body["history"]] == ["enable", "disable", "edit", "edit", "add"]
    assert (await api.delete(path, key=keys["agent"])).status == 403
    gone = await api.delete(path, key=keys["manager"])
    assert gone.status == 204 and gone.body is None
    assert (await api.get(path, key=keys["agent"])).status == 404
    assert (await api.delete(path, key=keys["manager"])).status == 404
    assert (await command(world, "rule list")).title == "No rules yet"


@pytest.mark.parametrize(
    ("change", "words", "field"),
    [
        # RE2 runs in linear time: what it cannot run so is refused with its reason.
        ({"keyword_type": "regexp", "pattern": "(?=open)"}, "RE2 refuses", None),
        ({"keyword_type": "regexp", "pattern": r"(a)\1"}, "RE2 refuses", None),
        ({"keyword_type": "regexp", "pattern": "[a-z]{1,1000}{1,1000}"}, "RE2", None),
        ({"keyword_type": "regexp", "pattern": None}, "needs a pattern", None),
        ({"keyword_type": "always", "pattern": "open"}, "has no keywords", "pattern"),
        ({"keyword_type": "contain", "pattern": "open,,hours"}, "is empty", None),
        ({"actions": [{"do": "answer", "text": "Hi {FOO}"}]}, "unknown placeholder", None),
        ({"actions": [{"do": "mail", "target": "not-an-address"}]}, "e-mail address", None),
        ({"actions": [{"do": "join", "target": "nosuch"}]}, "there is no channel", None),
        ({"actions": [{"do": "answer", "text": "Hi", "target": "x"}]}, "takes no target", None),
        ({"actions": [{"do": "reply", "text": "Hi"}]}, "Input should be", "actions.0.do"),
        ({"actions": []}, "at least 1", "actions"),
        ({"hours": "25:00-08:00"}, "not a time window", "hours"),
        ({"hours": "08:00-08:00"}, "same time", "hours"),
        ({"days": []}, "at least 1", "days"),
        ({"platforms": ["fax"]}, "Input should be", "platforms.0"),
        ({"limit": "every"}, "needs limit_seconds", "limit_seconds"),
        ({"limit_seconds": 60}, "goes with limit every", "limit_seconds"),
        ({"name": "two\nlines"}, "should match", "name"),
        ({"priority": 10**12}, "less than or equal", "priority"),
    ],
)
async def test_what_cannot_work_is_refused_and_nothing_is_saved(
    world, api, keys, change, words, field
):
    body = {**HOURS, "limit": "always", "limit_seconds": None, **change}
    body = {k: v for k, v in body.items() if v is not None or k in change}
    answer = await api.post("/rules", key=keys["manager"], body=body)
    assert answer.status == 422, answer.body
    assert words in answer.error["message"], answer.error
    assert answer.error.get("field") == field
    assert await world.sql("select count(*) from rules") == [(0,)]


async def test_a_pattern_re2_runs_in_linear_time_is_taken(world, api, keys):
    body = {**HOURS, "keyword_type": "regexp", "pattern": "(a+)+$", "limit": "always"}
    del body["limit_seconds"]
    created = await api.post("/rules", key=keys["manager"], body=body)
    assert created.status == 201, created.body
    tested = await api.post(
        "/rules/test", key=keys["agent"], body={"text": "a" * 4000 + "b", "platform": "telegram"}
    )
    assert tested.status == 200 and tested.body["fired"] == []


async def test_test_says_what_would_fire_and_does_nothing(world, api, keys):
    assert (await api.post("/rules", key=keys["manager"], body=HOURS)).status == 201
    rest = {
        "name": "fallback",
        "keyword_type": "rest",
        "actions": [{"do": "answer", "text": "We will answer soon."}],
    }
    assert (await api.post("/rules", key=keys["manager"], body=rest)).status == 201
    hit = await api.post("/rules/test", key=keys["agent"], body={"text": "Are you open?"})
    assert hit.status == 200, hit.body
    assert hit.body["platform"] == "telegram"
    assert [(r["name"], r["rest"], r["does"]) for r in hit.body["fired"]] == [
        ("opening-hours", False, ["answered automatically"])
    ]
    sms = await api.post(
        "/rules/test", key=keys["agent"], body={"text": "Are you open?", "platform": "sms"}
    )
    assert [(r["name"], r["rest"]) for r in sms.body["fired"]] == [("fallback", True)]
    # A rule not saved yet is tested as if it were, checked as saving would check it.
    draft = {
        "name": "prices",
        "keyword_type": "regexp",
        "pattern": "(?i)price",
        "actions": [{"do": "post", "target": "https://crm.example.com/hook"}],
    }
    with_draft = await api.post(
        "/rules/test", key=keys["agent"], body={"text": "Your PRICES?", "rule": draft}
    )
    assert [(r["id"], r["name"], r["does"]) for r in with_draft.body["fired"]] == [
        (None, "prices", ["forwarded to https://crm.example.com/hook"])
    ]
    evil = {**draft, "pattern": "(?<=a)b"}
    refused = await api.post("/rules/test", key=keys["agent"], body={"text": "ab", "rule": evil})
    assert refused.status == 422 and "RE2 refuses" in refused.error["message"]
    for at in ("9999-12-31T23:59:59-23:59", 0, "2026-12-24"):
        bad = await api.post("/rules/test", key=keys["agent"], body={"text": "hi", "at": at})
        assert bad.status == 422 and bad.error["field"] == "at", (at, bad.body)
    late = await api.post(
        "/rules/test",
        key=keys["agent"],
        body={"text": "hours?", "at": "2026-12-24T20:00:00+01:00"},
    )
    assert late.body["at"].startswith("2026-12-24T19:00:00")  # in the rules' zone (UTC here)
    assert await world.sql("select name from rules order by id") == [
        ("opening-hours",),
        ("fallback",),
    ]
    assert world.tg.messages_to(ANNA) == []


@pytest.fixture
def endpoint():
    """A file server on loopback; its port is known before the bridge starts."""
    return Endpoint()


@pytest.fixture
def allow_private(endpoint):
    return [endpoint.allow]


async def test_answer_file_is_fetched_and_kept_when_saved(
    endpoint, allow_private, world, api, keys
):
    await endpoint.start()
    try:
        endpoint.files["prices.pdf"] = (b"%PDF-1.4 prices", "application/pdf")
        body = {
            "name": "prices",
            "keyword_type": "contain",
            "pattern": "price",
            "actions": [
                {"do": "answer-file", "url": endpoint.url("/files/prices.pdf"), "text": "Prices"}
            ],
        }
        created = await api.post("/rules", key=keys["manager"], body=body)
        assert created.status == 201, created.body
        [action] = created.body["actions"]
        assert action["kind"] == "autoAnswerMedia" and action["file_name"] == "prices.pdf"
        # A later rule may send the same file by its id.
        again = {
            **body,
            "name": "prices-2",
            "actions": [{"do": "answer-file", "file_id": action["file_id"]}],
        }
        assert (await api.post("/rules", key=keys["manager"], body=again)).status == 201
        gone = {**body, "name": "prices-3", "actions": [{"do": "answer-file", "file_id": 99999}]}
        missing = await api.post("/rules", key=keys["manager"], body=gone)
        assert missing.status == 422 and missing.error["field"] == "actions.0.file_id"
        neither = {**body, "name": "prices-4", "actions": [{"do": "answer-file"}]}
        assert (await api.post("/rules", key=keys["manager"], body=neither)).status == 422
        url_for_answer = {
            **body,
            "name": "prices-5",
            "actions": [{"do": "answer", "text": "Hi", "url": endpoint.url("/x")}],
        }
        wrong = await api.post("/rules", key=keys["manager"], body=url_for_answer)
        assert wrong.status == 422 and wrong.error["field"] == "actions.0.url"
    finally:
        await endpoint.stop()
    await world.says(ANNA, "price list please", first_name="Anna")
    await eventually(lambda: world.tg.messages_to(ANNA), message="the file")


async def test_a_word_where_an_id_goes_is_no_id(world, api, keys):
    # Found by Schemathesis: PATCH /rules/test was taken for PATCH /rules/{rule_id}.
    wrong = await api.call("PATCH", "/rules/test", key=keys["manager"], body={})
    assert wrong.status == 405 and wrong.headers["Allow"] == "POST"
    assert (await api.get("/rules/test", key=keys["agent"])).status == 405
    assert (await api.get("/rules/0", key=keys["agent"])).status == 404
    assert (await api.get("/rules/first", key=keys["agent"])).status == 404


async def test_rules_come_in_pages(world, api, keys):
    for n in range(5):
        body = {"name": f"rule {n}", "keyword_type": "always", "actions": [{"do": "ignore"}]}
        assert (await api.post("/rules", key=keys["manager"], body=body)).status == 201
    path, seen = "/rules?limit=2", []
    while path:
        page = await api.get(path, key=keys["agent"])
        seen += [r["name"] for r in page.body["items"]]
        path = page.body["next"] and page.body["next"].removeprefix("/api/v1")
    assert seen == [f"rule {n}" for n in range(5)]
