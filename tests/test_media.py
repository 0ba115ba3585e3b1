"""Photos and documents cross in both directions as real files."""

from __future__ import annotations

from tests.harness import eventually

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


async def test_customer_photo_becomes_a_slack_file_in_the_thread(world):
    await world.customer(world.tg.photo_update(111, PNG, caption="the broken part"))
    root = await world.thread_of(111)
    await eventually(lambda: any(m.files for m in world.replies(root)), message="a file post")
    [post] = [m for m in world.replies(root) if m.files]
    assert "the broken part" in post.text
    assert world.slack.file_bytes(post.files[0]["id"]) == PNG


async def test_customer_document_keeps_its_name(world):
    await world.customer(
        world.tg.document_update(111, b"%PDF-1.4 invoice", "invoice.pdf", "application/pdf")
    )
    root = await world.thread_of(111)
    await eventually(lambda: any(m.files for m in world.replies(root)), message="a file post")
    [post] = [m for m in world.replies(root) if m.files]
    assert post.files[0]["name"] == "invoice.pdf"
    assert world.slack.file_bytes(post.files[0]["id"]) == b"%PDF-1.4 invoice"


async def test_agent_file_reaches_the_customer(world):
    await world.says(111, "send me the manual")
    root = await world.thread_of(111)
    await world.slack.agent_says(
        root.channel,
        root.ts,
        "Here it is",
        files=[("manual.pdf", b"%PDF manual", "application/pdf")],
    )
    await eventually(lambda: world.tg.messages_to(111), message="the document")
    [sent] = world.tg.messages_to(111)
    assert sent.method == "sendDocument"
    assert sent.file_name == "manual.pdf" and sent.file_bytes == b"%PDF manual"
    assert sent.caption == "Here it is"


async def test_agent_image_is_sent_as_a_photo(world):
    await world.says(111, "picture please")
    root = await world.thread_of(111)
    await world.slack.agent_says(root.channel, root.ts, "", files=[("shot.png", PNG, "image/png")])
    await eventually(lambda: world.tg.messages_to(111), message="the photo")
    assert world.tg.messages_to(111)[0].method == "sendPhoto"
