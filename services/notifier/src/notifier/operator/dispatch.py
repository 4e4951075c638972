"""Send operator-created letters right away: commit first, then enqueue a ``send_letters`` job.

The job is enqueued only after the request's transaction committed (never for rows a rolled-back
request did not write). If Redis is down the letters are still committed as ``scheduled`` and the
per-minute drain sends them, so the API does not fail for it.
"""

from __future__ import annotations

from collections.abc import Sequence

from arq.connections import ArqRedis
from notifier_common.logging import get_logger
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession

log = get_logger("notifier.operator")

SEND_LETTERS = "send_letters"


async def send_after_commit(
    session: AsyncSession, redis: ArqRedis, letter_ids: Sequence[int], *, queue_name: str
) -> bool:
    """Commit, then ask a worker to send these letters now. False if only the drain will."""
    await session.commit()
    if not letter_ids:
        return False
    ids = sorted(letter_ids)
    try:
        await redis.enqueue_job(
            SEND_LETTERS, ids, _job_id=f"send:{ids[0]}:{len(ids)}", _queue_name=queue_name
        )
    except (RedisError, OSError) as exc:
        log.warning("operator.send_enqueue_failed", letter_ids=ids, error=str(exc))
        return False
    return True
