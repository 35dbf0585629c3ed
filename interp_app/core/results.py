"""The shared result cache of background jobs: per-step results as bytes, on disk or in Redis.

One machine keeps them in a ``diskcache.Cache`` folder (the app's processes and the jobs it
starts share it); a team deployment keeps them in Redis, so a timeline step computed once by
any Celery worker serves every app worker and replica. Values are numpy's ``.npz`` bytes
read back with ``allow_pickle=False``: data, never code.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

UNREADABLE = b"unreadable"  # the step's parameters could not be read when the job ran
EXPIRE_SECONDS = 7 * 24 * 3600  # a result no one read for a week is dropped


class ResultCache(Protocol):
    """Bytes by string key, shared by every process of a deployment."""

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]: ...

    def put(self, key: str, value: bytes) -> None: ...


def encode(arrays: dict[str, np.ndarray]) -> bytes:
    """Named arrays as ``.npz`` bytes (uncompressed: the values are mostly noise-like floats)."""
    buffer = io.BytesIO()
    named: dict[str, Any] = {k: np.asarray(v) for k, v in arrays.items()}
    np.savez(buffer, **named)
    return buffer.getvalue()


def decode(data: bytes) -> dict[str, np.ndarray]:
    """The arrays of :func:`encode`; object arrays are refused (``allow_pickle=False``)."""
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


class DiskResults:
    """Results in a ``diskcache.Cache`` folder: safe across processes on one machine."""

    def __init__(self, cache: Any):
        self.cache = cache

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return [self.cache.get(k) for k in keys]

    def put(self, key: str, value: bytes) -> None:
        self.cache.set(key, value, expire=EXPIRE_SECONDS)


class RedisResults:
    """Results in Redis, one ``MGET`` per lookup: what every worker and replica shares."""

    def __init__(self, client: Any, prefix: str = "interp:"):
        self.client = client
        self.prefix = prefix

    def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """Nothing found while Redis cannot be reached: the page draws what it has (and the
        job, which cannot be queued either, says so) instead of failing the request."""
        import redis

        if not keys:
            return []
        try:
            return list(self.client.mget([self.prefix + k for k in keys]))
        except redis.RedisError:
            return [None] * len(keys)

    def put(self, key: str, value: bytes) -> None:
        self.client.set(self.prefix + key, value, ex=EXPIRE_SECONDS)
