"""The progress message's time to go: from the platforms' limits before anything is measured,
then from the rate achieved; in seconds, minutes or hours as fits."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from bridge.broadcasts import progress_text
from storage.broadcasts_store import BroadcastRecord

START = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def running(queued: int) -> BroadcastRecord:
    return BroadcastRecord(
        id=7,
        created_by="U1",
        created_at=START,
        surface="slack",
        channel="C1",
        progress_ref=None,
        text="Hello",
        template=None,
        file_id=None,
        channel_ids=(1,),
        platforms=(),
        scheduled_at=None,
        state="running",
        started_at=START,
        finished_at=None,
        cursor=0,
        queued=queued,
        expanded=True,
        publish=(),
    )


def test_before_anything_is_sent_the_time_to_go_comes_from_the_platforms_limits():
    text = progress_text(running(900), {}, False, START, limit_rate=30.0)
    assert "about 31s to go at the platforms' limit of 30/s" in text.split("\n")


def test_once_sending_the_time_to_go_comes_from_the_rate_achieved():
    counts = {"telegram": {"sent": 200}}
    text = progress_text(running(900), counts, False, START + timedelta(seconds=10), limit_rate=30)
    assert "about 36s to go at 20/s" in text.split("\n")
    assert "telegram: sent 200" in text.split("\n")


def test_long_broadcasts_say_minutes_and_hours():
    counts = {"whatsapp": {"sent": 100}}
    later = START + timedelta(seconds=100)
    assert "about 17 min to go at 1/s" in progress_text(running(1100), counts, False, later)
    big = replace(running(100_000), queued=100_100)
    assert "about 27 h 47 min to go at 1/s" in progress_text(big, counts, False, later)
