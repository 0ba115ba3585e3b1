"""Focused benchmark: the inbound write path alone with bench/peer_opsdroid.py's 1,100 rules.

The real pipeline on SQLite between an in-memory connector and staff surface (the test kit's
fakes), no HTTP and no dispatcher: messages go to `Pipeline.on_inbound` in batches of
`--batch`, one writer transaction each (what the group commit makes of that many concurrent
webhooks), and every answer the rules give is stored and queued. Prints messages stored per
second of wall time and the process CPU time per message (steadier on a shared machine);
`--profile FILE` writes a cProfile of the measured part. `--deliver` then starts the
dispatcher and times it until every row is carried out (in memory: no HTTP).

Usage: python bench/rules_batches.py [--messages 2000] [--batch 50] [--chats 200]
          [--contain 1000] [--regexp 100] [--profile out.prof]
          [--deliver] [--deliver-profile out.prof]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import itertools
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.peer_opsdroid import expected_answers, workload  # noqa: E402
from bridge.types import (  # noqa: E402
    InboundMessage,
)
from storage import Tx  # noqa: E402
from tests.pipeline_kit import Rig, start_rig, text_from  # noqa: E402

_ids = itertools.count(1)


def message(chat: int, text: str, at: datetime) -> InboundMessage:
    return text_from(chat, text, at, f"b{next(_ids)}")


async def feed(rig: Rig, items: list[tuple[int, str]], batch: int) -> None:
    for start in range(0, len(items), batch):
        chunk = items[start : start + batch]
        await rig.pipeline.on_inbound([message(c, t, rig.clock()) for c, t in chunk])


async def deliver(rig: Rig, args: argparse.Namespace, count: int) -> None:
    """Start the dispatcher and time it until the outbox is empty (the fakes answer at once)."""
    profile = cProfile.Profile() if args.deliver_profile else None
    wall, cpu = time.perf_counter(), time.process_time()
    if profile is not None:
        profile.enable()
    await rig.dispatcher.start()
    await rig.settle(timeout=600)
    if profile is not None:
        profile.disable()
        profile.dump_stats(args.deliver_profile)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    sent = len(rig.customer.sent)
    print(
        f"  delivered: {sent:,} answers (warm-up's included) in {wall:.2f}s ="
        f" {count / wall:,.0f} messages/s, {cpu / sent * 1000:.2f} ms CPU per answer"
    )


async def run(args: argparse.Namespace) -> None:
    rules, texts = workload(args.seed, args.contain, args.regexp, args.messages)
    with tempfile.TemporaryDirectory(prefix="bench-rules-batches-") as tmp:
        rig = await start_rig(Path(tmp), bridge={"card_refresh_s": 5.0})
        try:
            await rig.dispatcher.stop()  # the write path alone
            now = datetime.now(UTC)

            def insert(tx: Tx) -> None:
                for rule in rules:
                    tx.rules.add_rule(rule, "bench", now)

            await rig.writer.call(insert)
            rig.pipeline.chatbot.rules_changed()
            await feed(rig, [(c, "Hello!") for c in range(args.chats)], args.batch)  # warm-up
            items = [(n % args.chats, text) for n, text in enumerate(texts)]
            profile = cProfile.Profile() if args.profile else None
            wall, cpu = time.perf_counter(), time.process_time()
            if profile is not None:
                profile.enable()
            await feed(rig, items, args.batch)
            if profile is not None:
                profile.disable()
                profile.dump_stats(args.profile)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            [(answers,)] = await rig.sql("select count(*) from messages where direction = 'out'")
            if args.deliver:
                await deliver(rig, args, len(texts))
            wanted = expected_answers(rules, texts)[0] + expected_answers(rules, ["Hello!"])[0] * (
                args.chats
            )
            if answers != wanted:
                raise RuntimeError(f"{answers} answers stored, {wanted} expected")
        finally:
            await rig.stop()
    print(
        f"rules_batches: {len(texts):,} messages in batches of {args.batch} with"
        f" {len(rules):,} rules: {len(texts) / wall:,.0f} messages/s stored,"
        f" {cpu / len(texts) * 1000:.2f} ms CPU per message ({answers:,} answers in all)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--chats", type=int, default=200)
    parser.add_argument("--contain", type=int, default=1000)
    parser.add_argument("--regexp", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", default=None)
    parser.add_argument("--deliver", action="store_true", help="then run the dispatcher")
    parser.add_argument("--deliver-profile", default=None)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
