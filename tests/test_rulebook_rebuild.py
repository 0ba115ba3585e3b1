"""The compiled chatbot rules are built again when the stored rules change, even by another
process, and not while they stay the same (building a thousand rules takes a good part of a
second, in the writer's transaction)."""

from __future__ import annotations

from datetime import UTC, datetime

import bridge.pipeline.chatbot as chatbot_module
from bridge.rules import Matcher
from bridge.types import Action, Rule
from tests.pipeline_kit import rig_fixture

ANN = "8190001"

rig = rig_fixture()


async def test_rules_are_built_again_only_when_they_changed(rig, monkeypatch):
    monkeypatch.setattr(chatbot_module, "RULES_CACHE_S", 0.0)  # look at every message
    builds: list[int] = []
    build = Matcher.build

    def counting(rules, zone):
        builds.append(len(rules))
        return build(rules, zone)

    monkeypatch.setattr(Matcher, "build", staticmethod(counting))
    assert (await rig.command('rule add greet contain "hello" --do "answer: Hi!"')).ok
    for text in ("hello", "hello again", "hello, anyone?"):
        await rig.customer.says(ANN, text)
    await rig.settle()
    assert rig.customer.texts_to(ANN) == ["Hi!", "Hi!", "Hi!"]
    assert builds == [1]

    # Another process adds a rule: nobody here is told, the next message sees it.
    hours = Rule(
        id=0,
        name="hours",
        keyword_type="contain",
        pattern="hours",
        actions=(Action("autoAnswer", text="We open at 8."),),
    )
    await rig.db.write_tx(lambda tx: tx.rules.add_rule(hours, "U2", datetime.now(UTC)))
    await rig.customer.says(ANN, "your hours?")
    await rig.customer.says(ANN, "hours again")
    await rig.settle()
    assert rig.customer.texts_to(ANN)[3:] == ["We open at 8.", "We open at 8."]
    assert builds == [1, 2]
