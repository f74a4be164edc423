"""redis-py's exceptions, mapped to statesync's tree by the Redis code that meets them
(the state store and the rate budget). Imported only where redis-py is installed."""

from __future__ import annotations

from redis.exceptions import RedisError

from statesync.errors import StoreError

__all__ = ["RedisError", "map_redis_error"]


def map_redis_error(exc: RedisError) -> StoreError:
    """The :class:`StoreError` for one of redis-py's exceptions (a lost connection, a
    timeout, a script error), naming its type."""
    error = StoreError(f"redis: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error
