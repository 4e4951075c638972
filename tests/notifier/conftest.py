from collections.abc import AsyncIterator

import pytest
from arq.connections import ArqRedis, RedisSettings, create_pool
from notifier.settings import NotifierSettings


@pytest.fixture
async def redis(settings: NotifierSettings) -> AsyncIterator[ArqRedis]:
    """An arq pool on the test's Redis db (the producers' side of the queue)."""
    pool = await create_pool(RedisSettings.from_dsn(settings.redis_url))
    yield pool
    await pool.aclose()
