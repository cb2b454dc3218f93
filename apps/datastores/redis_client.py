"""The Redis console and the statements of its operations, with the ``redis`` client.

Deleting by pattern walks the keyspace with SCAN (COUNT up to 1000, smaller when the server
is slow to answer) and UNLINKs each batch: never KEYS, which blocks the server for the whole
keyspace, and never DEL of a huge value in the server's main thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import redis

from apps.datastores.models import RedisTarget

SOCKET_TIMEOUT_SECONDS = 5
SCAN_BATCH = 1000
# Delete by pattern adapts its SCAN COUNT (and so its UNLINK batch) to how long each command
# takes, timed from the client (an upper bound of the server's own time): a command over the
# budget halves the next batch, down to DELETE_BATCH_MIN; commands well under it let the
# batch grow back to SCAN_BATCH. A busy server gets smaller bites, never a long block.
DELETE_BATCH_MIN = 100
BATCH_BUDGET_MS = 5.0
SAMPLE_SIZE = 20
SLOWLOG_SHOWN = 15
# A preview walks the keyspace to count; past this many keys examined it stops and says so.
PREVIEW_SCAN_LIMIT = 2_000_000
BULLMQ_STATES = ("wait", "active", "failed", "delayed")
# The maintainuk runbook's alert: "Queue depth > 1000 for 10 minutes".
QUEUE_WARNING_DEPTH = 1000


class RedisProblem(Exception):
    """Redis could not be reached or refused; the message says why for people."""


def describe_error(target: RedisTarget, exc: Exception) -> str:
    where = target.label
    text = str(exc)
    if "NOAUTH" in text or (isinstance(exc, redis.AuthenticationError) and not target.has_password):
        return f"Redis at {where} needs a password and none is stored."
    if isinstance(exc, redis.AuthenticationError) or "WRONGPASS" in text:
        return f"Wrong password (or user) for Redis at {where}."
    if isinstance(exc, redis.AuthenticationWrongNumberOfArgsError):
        return f"Redis at {where} has no password set, but one is stored for it."
    if isinstance(exc, redis.TimeoutError):
        return f"Redis at {where} did not answer within {SOCKET_TIMEOUT_SECONDS} s."
    if isinstance(exc, redis.ConnectionError):
        return f"Redis at {where} does not answer: {text}"
    return f"Redis at {where} refused: {text}"


def client_for(target: RedisTarget) -> redis.Redis:
    url = target.url
    if target.tls and url.startswith("redis://"):
        url = "rediss://" + url[len("redis://") :]
    return redis.Redis.from_url(
        url,
        db=target.db,
        password=target.password() or None,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
        decode_responses=True,
        client_name="opsportal-console",
    )


def talking_to(target: RedisTarget) -> Any:
    """A context manager that turns the client's exceptions into RedisProblem."""
    return _Guard(target)


class _Guard:
    def __init__(self, target: RedisTarget) -> None:
        self.target = target

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        if isinstance(exc, redis.RedisError):
            raise RedisProblem(describe_error(self.target, exc)) from None


@dataclass
class QueueDepth:
    kind: str  # "BullMQ", "Celery", "key"
    name: str
    depths: list[tuple[str, int | None]]  # (what, count); None: absent or of another type
    note: str = ""

    @property
    def state(self) -> str:
        """Warning when any of its counts is over the runbooks' alert depth."""
        deep = any(count is not None and count > QUEUE_WARNING_DEPTH for _, count in self.depths)
        return "warning" if deep else "ok"


@dataclass
class RedisSnapshot:
    ping_ms: float = 0.0
    version: str = ""
    mode: str = ""
    uptime_seconds: int = 0
    used_memory: int = 0
    maxmemory: int = 0
    maxmemory_policy: str = ""
    clients: int = 0
    blocked_clients: int = 0
    last_save: datetime | None = None
    last_bgsave_status: str = ""
    bgsave_in_progress: bool = False
    changes_since_save: int = 0
    aof_enabled: bool = False
    aof_status: str = ""
    keyspace: dict[str, dict[str, Any]] = field(default_factory=dict)
    slowlog: list[dict[str, Any]] = field(default_factory=list)
    queues: list[QueueDepth] = field(default_factory=list)

    @property
    def memory_percent(self) -> float | None:
        return 100.0 * self.used_memory / self.maxmemory if self.maxmemory else None

    @property
    def memory_state(self) -> str:
        percent = self.memory_percent
        if percent is None:
            return "ok"
        if percent >= 95:
            return "critical"
        return "warning" if percent >= 80 else "ok"


def read_snapshot(target: RedisTarget) -> RedisSnapshot:
    """PING latency, INFO's essentials, SLOWLOG and the declared queues' depths, in a few
    round trips; RedisProblem when it cannot be read."""
    client = client_for(target)
    try:
        with talking_to(target):
            started = time.perf_counter()
            client.ping()
            ping_ms = (time.perf_counter() - started) * 1000
            info = client.info("everything")
            slowlog = client.slowlog_get(SLOWLOG_SHOWN)
            queues = queue_depths(client, target)
    finally:
        client.close()
    last_save = info.get("rdb_last_save_time")
    return RedisSnapshot(
        ping_ms=ping_ms,
        version=str(info.get("redis_version", "")),
        mode=str(info.get("redis_mode", "")),
        uptime_seconds=int(info.get("uptime_in_seconds", 0)),
        used_memory=int(info.get("used_memory", 0)),
        maxmemory=int(info.get("maxmemory", 0)),
        maxmemory_policy=str(info.get("maxmemory_policy", "")),
        clients=int(info.get("connected_clients", 0)),
        blocked_clients=int(info.get("blocked_clients", 0)),
        last_save=datetime.fromtimestamp(int(last_save), tz=UTC) if last_save else None,
        last_bgsave_status=str(info.get("rdb_last_bgsave_status", "")),
        bgsave_in_progress=bool(info.get("rdb_bgsave_in_progress", 0)),
        changes_since_save=int(info.get("rdb_changes_since_last_save", 0)),
        aof_enabled=bool(info.get("aof_enabled", 0)),
        aof_status=str(info.get("aof_last_write_status", "")),
        keyspace={
            name: value
            for name, value in info.items()
            if name.startswith("db") and isinstance(value, dict)
        },
        slowlog=[
            {
                "id": entry["id"],
                "at": datetime.fromtimestamp(entry["start_time"], tz=UTC),
                "micros": entry["duration"],
                "command": _command_text(entry["command"]),
            }
            for entry in slowlog
        ],
        queues=queues,
    )


def read_headline(target: RedisTarget) -> RedisSnapshot:
    """The figures of the service page's panel: PING latency, version, memory against
    maxmemory, clients and the declared queues' depths (no slowlog, no keyspace), in four
    round trips; RedisProblem when it cannot be read."""
    client = client_for(target)
    try:
        with talking_to(target):
            started = time.perf_counter()
            client.ping()
            ping_ms = (time.perf_counter() - started) * 1000
            pipe = client.pipeline(transaction=False)
            for section in ("server", "memory", "clients"):
                pipe.info(section)
            info: dict[str, Any] = {}
            for part in pipe.execute():
                info.update(part)
            queues = queue_depths(client, target)
    finally:
        client.close()
    return RedisSnapshot(
        ping_ms=ping_ms,
        version=str(info.get("redis_version", "")),
        uptime_seconds=int(info.get("uptime_in_seconds", 0)),
        used_memory=int(info.get("used_memory", 0)),
        maxmemory=int(info.get("maxmemory", 0)),
        clients=int(info.get("connected_clients", 0)),
        blocked_clients=int(info.get("blocked_clients", 0)),
        queues=queues,
    )


def _command_text(command: Any) -> str:
    text = command.decode("utf-8", "replace") if isinstance(command, bytes) else str(command)
    return text[:300]


def queue_depths(client: redis.Redis, target: RedisTarget) -> list[QueueDepth]:
    """Each declared queue's counts: two pipelined round trips whatever their number (TYPE
    of every key, then the size that fits each type)."""
    keys: list[tuple[str, str, str]] = []  # (kind, queue, key)
    for name in target.bullmq_names:
        keys += [("BullMQ", name, f"bull:{name}:{state}") for state in BULLMQ_STATES]
    keys += [("Celery", name, name) for name in target.celery_names]
    keys += [("key", name, name) for name in target.extra_names]
    if not keys:
        return []
    pipe = client.pipeline(transaction=False)
    for _, _, key in keys:
        pipe.type(key)
    types = [str(kind) for kind in pipe.execute()]
    pipe = client.pipeline(transaction=False)
    sized: list[bool] = []
    for (_, _, key), kind in zip(keys, types, strict=True):
        command = {
            "list": pipe.llen,
            "zset": pipe.zcard,
            "set": pipe.scard,
            "hash": pipe.hlen,
            "stream": pipe.xlen,
            "string": pipe.strlen,
        }.get(kind)
        if command is not None:
            command(key)
        sized.append(command is not None)
    answers = iter(pipe.execute())
    sizes = [int(next(answers)) if has else None for has in sized]
    found: dict[tuple[str, str], QueueDepth] = {}
    for (kind, name, key), key_type, size in zip(keys, types, sizes, strict=True):
        depth = found.setdefault((kind, name), QueueDepth(kind=kind, name=name, depths=[]))
        what = key.rsplit(":", 1)[1] if kind == "BullMQ" else key_type
        if key_type == "none":
            depth.depths.append((what, 0))
        else:
            depth.depths.append((what, size))
    return list(found.values())


def test_connection(target: RedisTarget) -> str:
    """PING and the server's version, in words; RedisProblem otherwise."""
    client = client_for(target)
    try:
        with talking_to(target):
            started = time.perf_counter()
            client.ping()
            ms = (time.perf_counter() - started) * 1000
            version = client.info("server").get("redis_version", "?")
    finally:
        client.close()
    return f"PONG in {ms:.1f} ms, Redis {version}"


# --- delete by pattern ------------------------------------------------------------------------


def is_everything(pattern: str) -> bool:
    """A pattern that matches every key: ``*``, ``**``…"""
    return pattern.strip("*") == ""


@dataclass(frozen=True)
class Preview:
    count: int
    sample: list[str]
    complete: bool  # False when the walk stopped at PREVIEW_SCAN_LIMIT keys


def preview_pattern(client: redis.Redis, pattern: str) -> Preview:
    """How many keys match and the first SAMPLE_SIZE of them, by SCAN."""
    count, examined = 0, 0
    sample: list[str] = []
    cursor = 0
    while True:
        cursor, found = client.scan(cursor=cursor, match=pattern, count=SCAN_BATCH)
        keys = [str(key) for key in found]
        count += len(keys)
        examined += SCAN_BATCH
        if len(sample) < SAMPLE_SIZE:
            sample += keys[: SAMPLE_SIZE - len(sample)]
        if cursor == 0:
            return Preview(count, sorted(sample), True)
        if examined >= PREVIEW_SCAN_LIMIT:
            return Preview(count, sorted(sample), False)


@dataclass
class Deletion:
    deleted: int = 0
    batches: int = 0
    calls: int = 0
    slowest_call_ms: float = 0.0
    count: int = SCAN_BATCH  # the SCAN COUNT of the next batch
    smallest_count: int = SCAN_BATCH

    def note_call(self, started: float) -> None:
        self.took((time.perf_counter() - started) * 1000)

    def took(self, call_ms: float) -> None:
        """One command took ``call_ms``: the longest so far, and the next batch's size."""
        self.calls += 1
        self.slowest_call_ms = max(self.slowest_call_ms, call_ms)
        if call_ms > BATCH_BUDGET_MS:
            self.count = max(DELETE_BATCH_MIN, self.count // 2)
        elif call_ms < BATCH_BUDGET_MS / 4:
            self.count = min(SCAN_BATCH, self.count * 2)
        self.smallest_count = min(self.smallest_count, self.count)


def delete_pattern(
    client: redis.Redis, pattern: str, on_batch: Callable[[Deletion], None] | None = None
) -> Deletion:
    """UNLINK every key matching ``pattern``, one SCAN batch at a time; each call is timed so
    that the longest single command can be reported and the next batch sized (see
    BATCH_BUDGET_MS)."""
    outcome = Deletion()
    for keys in _scan_batches(client, pattern, outcome):
        started = time.perf_counter()
        outcome.deleted += int(client.unlink(*keys))
        outcome.note_call(started)
        outcome.batches += 1
        if on_batch is not None:
            on_batch(outcome)
    return outcome


def _scan_batches(client: redis.Redis, pattern: str, outcome: Deletion) -> Iterator[list[str]]:
    cursor = 0
    while True:
        started = time.perf_counter()
        cursor, keys = client.scan(cursor=cursor, match=pattern, count=outcome.count)
        outcome.note_call(started)
        if keys:
            yield [str(key) for key in keys]
        if cursor == 0:
            return


def clear_bullmq_failed(client: redis.Redis, queue: str) -> int:
    """Remove every failed job of a BullMQ queue: the job hashes (and their logs) and their
    ids in ``bull:<queue>:failed``, a batch at a time."""
    failed_key = f"bull:{queue}:failed"
    removed = 0
    while True:
        ids = [str(job) for job in client.zrange(failed_key, 0, SCAN_BATCH - 1)]
        if not ids:
            return removed
        job_keys = [f"bull:{queue}:{job}" for job in ids]
        job_keys += [f"bull:{queue}:{job}:logs" for job in ids]
        pipe = client.pipeline(transaction=True)
        pipe.unlink(*job_keys)
        pipe.zrem(failed_key, *ids)
        pipe.execute()
        removed += len(ids)
