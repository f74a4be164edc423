"""Every Redis key name :class:`~statesync.stores.redis.RedisStateStore` uses, built here only.

A job's keys share the hash tag ``{job_id}``, so they live in one cluster slot and a Lua
script may touch several of them. The jobs index is the one key outside any job's slot.

Job ids and entity names are escaped (``%``, ``:``, ``{``, ``}``), so no choice of names
can make two different keys collide or move a key into another job's slot.
"""

from __future__ import annotations

from attrs import frozen

_ESCAPES = str.maketrans({"%": "%25", ":": "%3A", "{": "%7B", "}": "%7D"})


def _part(name: str) -> str:
    return name.translate(_ESCAPES)


@frozen
class Keys:
    """Key names under ``prefix``, e.g. ``statesync:job:{42}:entity:customers``."""

    prefix: str

    def __attrs_post_init__(self) -> None:
        # A brace in the prefix would become the hash tag and put every job in one slot.
        if not self.prefix or "{" in self.prefix or "}" in self.prefix:
            raise ValueError(f"a key prefix must be non-empty and brace-free, got {self.prefix!r}")

    def jobs_index(self) -> str:
        """Sorted set of job ids scored by creation time (for ``list_jobs``)."""
        return f"{self.prefix}:jobs"

    def job(self, job_id: str) -> str:
        """Hash: ``spec`` (JobSpec JSON), ``entities`` (JSON list), ``finished_at``."""
        return f"{self._job_base(job_id)}:spec"

    def entity(self, job_id: str, entity: str) -> str:
        """Hash: ``v`` (version, compared by Lua) and ``data`` (EntityRecord JSON)."""
        return f"{self._job_base(job_id)}:entity:{_part(entity)}"

    def history(self, job_id: str, entity: str) -> str:
        """List of TransitionRecord JSON, oldest first."""
        return f"{self._job_base(job_id)}:history:{_part(entity)}"

    def lease(self, job_id: str, entity: str) -> str:
        """String ``"{token}:{owner}"`` with the lease's TTL."""
        return f"{self._job_base(job_id)}:lease:{_part(entity)}"

    def lease_holder(self, job_id: str, entity: str) -> str:
        """String, JSON ``{"host": …, "pid": …}`` of the lease's holder; same TTL as the lease."""
        return f"{self._job_base(job_id)}:holder:{_part(entity)}"

    def fence(self, job_id: str, entity: str) -> str:
        """Counter the fencing tokens are drawn from (only ever increases)."""
        return f"{self._job_base(job_id)}:fence:{_part(entity)}"

    def durable_keys(self, job_id: str, entity: str) -> tuple[str, str, str]:
        """One entity's keys that live as long as the job (not the self-expiring lease)."""
        return (
            self.entity(job_id, entity),
            self.history(job_id, entity),
            self.fence(job_id, entity),
        )

    def _job_base(self, job_id: str) -> str:
        return f"{self.prefix}:job:{{{_part(job_id)}}}"
