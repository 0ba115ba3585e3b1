"""Mirror posts past a staff platform's size limit: posted in pieces, each under the limit."""

from __future__ import annotations

from dataclasses import replace

from bridge.errors import TooLarge
from bridge.protocols import StaffSurface
from bridge.textsplit import split_text
from bridge.types import MirrorPost, StaffMessageRef, ThreadRef

# A piece the platform refuses as too large is cut in halves, down to about this size.
PIECE_MIN = 1000


async def post_in_pieces(
    surface: StaffSurface,
    thread: ThreadRef,
    post: MirrorPost,
    budget: int,
    *,
    resume: bool,
) -> StaffMessageRef:
    """Post `post` in as many posts as its size needs; the first one's ref.

    Pieces before the last carry the marker "<row>.<n>", the last one the row's own marker:
    a retry finds the row posted only once every piece is, and skips pieces already there.
    A piece the platform still refuses as too large is cut again, smaller."""

    def fits(text: str) -> bool:
        return surface.post_size(replace(post, text=text)) <= budget

    pieces = split_text(post.text, fits) if post.text else [""]
    first: StaffMessageRef | None = None
    for n, piece in enumerate(pieces, 1):
        last = n == len(pieces)
        marker = post.marker if last or not post.marker else f"{post.marker}.{n}"
        # Files and the quote of what the message answers go with the first piece only.
        part = replace(
            post,
            text=piece,
            files=post.files if n == 1 else (),
            quote=post.quote if n == 1 else None,
            marker=marker,
        )
        found = await surface.find_post(thread, marker) if resume and marker else None
        if found is not None:
            ref = found
        else:
            try:
                ref = await surface.post(thread, part)
            except TooLarge:
                if budget < PIECE_MIN or len(piece) < 2:
                    raise
                ref = await post_in_pieces(surface, thread, part, budget // 2, resume=resume)
        first = first or ref
    assert first is not None
    return first
