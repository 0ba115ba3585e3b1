"""What the consent tests share: the words the migration seeds and the bridge's confirmations."""

from __future__ import annotations

import importlib

import pytest

# The consent words the migration seeds (a module whose name starts with a digit).
_seed = importlib.import_module("storage.migrations.versions.0003_commands")
STOP_WORDS: dict[str, list[str]] = _seed.STOP_WORDS
START_WORDS: dict[str, list[str]] = _seed.START_WORDS

STOPPED = "You are unsubscribed and will get no more newsletters. Send START to subscribe again."
WELCOME_BACK = "Welcome back: you are subscribed again."
JOINED_NEWS = "You have joined news. Send LEAVE-NEWS to leave."
JOINED_DEALS = "You have joined deals. Send STOP to leave."


def shipped(table: dict[str, list[str]]) -> list[object]:
    """One parameter per seeded word, named by its language."""
    return [
        pytest.param(word, id=f"{language}-{word}")
        for language, words in table.items()
        for word in words
    ]
