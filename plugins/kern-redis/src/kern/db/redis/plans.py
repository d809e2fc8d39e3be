"""Each operation written once, run by a sync or an async runner.

An operation is a generator (a *plan*) that yields a *step* — a list of Redis commands
(``Cmd``) and script calls (``Lua``) that may run together — and receives their results in
order. ``kern.effects`` drives it (``run`` blocking, ``arun`` awaited), with the runner's
``execute`` as the performer: ``SyncRunner`` sends a step with blocking calls,
``AsyncRunner`` awaits it. Neither knows what the operation means, and the operation knows
nothing of sync or async. A failed step is thrown into the plan at its ``yield``; no plan
catches there, so the error leaves the plan unchanged.

A step of one command is sent as that command. A longer step is pipelined (one round trip
on a single server; one per node on a cluster, where redis-py refuses scripts inside a
pipeline, so those are sent one by one, or concurrently in the async runner).

A ``Scan`` (one round of ``SCAN`` over every primary) is sent alone; only migrations (rows
no index of an older layout lists) and whole-database exports (``kern.db.redis.export``:
runs of sessions with no session row are listed by no index) use it.

At most ``limit`` calls of one runner are on the wire at once (threads of a sync db, tasks
of an async one): redis-py's pools refuse to open more than their ``max_connections``
(``MaxConnectionsError``) rather than wait, so the runner waits instead.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from kern import effects
from kern.db.redis.lua import SCRIPTS
from redis.exceptions import (
    ClusterDownError,
    NoScriptError,
    RedisClusterException,
    SlotNotCoveredError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

T = TypeVar("T")


class ClusterUnreachableError(RedisConnectionError):
    """No node of a Redis Cluster could be reached. redis-py says so with a
    ``RedisClusterException`` ("Redis Cluster cannot be connected"), which is not a
    ``ConnectionError``; the runners' ``execute`` raises this instead, chained to it."""


#: What redis-py raises when the server cannot be reached or answer (connection refused or
#: lost, timeouts, a server still loading its data, a cluster that is down or has no node
#: serving a slot): the db's ``unavailable_errors``, which kern's door turns into
#: ``StorageUnavailableError``. Errors the server answers with (``ResponseError``) are not.
UNAVAILABLE: tuple[type[BaseException], ...] = (
    RedisConnectionError,  # with BusyLoadingError, AuthenticationError, ClusterUnreachableError
    RedisTimeoutError,
    ClusterDownError,  # with MasterDownError
    SlotNotCoveredError,
)


def _lost_connection(exc: RedisClusterException) -> bool:
    """Whether a lost connection caused ``exc`` (it then means "unreachable")."""
    return isinstance(exc.__cause__, RedisConnectionError | RedisTimeoutError)


@dataclass(frozen=True, slots=True)
class Cmd:
    """A redis-py client method and its arguments (``Cmd("zadd", key, {member: score})``)."""

    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any] | None = None

    def __init__(self, name: str, *args: Any, **kwargs: Any) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "args", args)
        object.__setattr__(self, "kwargs", kwargs or None)


@dataclass(frozen=True, slots=True)
class Lua:
    """One of ``lua.SCRIPTS`` by name; routed by its first key."""

    script: str
    keys: tuple[str, ...]
    args: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Scan:
    """One round of ``SCAN … MATCH match TYPE kind`` on every primary (sent alone in its
    step). ``cursor`` is 0 at first, then what the previous round returned; a round returns
    ``(cursor, keys)``, the cursor 0 once every node is done. On a cluster the cursor is the
    nodes' own, by node name."""

    match: str
    cursor: Any = 0
    count: int = 1000
    kind: str = "string"


Step = Sequence[Cmd | Lua | Scan]
Plan = Generator[Step, list[Any], T]


def together(*plans: Plan[Any]) -> Plan[tuple[Any, ...]]:
    """Run ``plans`` side by side: each round sends the next step of every unfinished plan
    as one step (one pipeline), so a read of several plans costs the round trips of the
    longest, not their sum. Their results, in order."""
    results: list[Any] = [None] * len(plans)
    pending: dict[int, Step] = {}

    def advance(index: int, replies: list[Any] | None) -> None:
        try:
            pending[index] = plans[index].send(replies)  # type: ignore[arg-type]
        except StopIteration as done:
            results[index] = done.value

    for index in range(len(plans)):
        advance(index, None)
    while pending:
        rounds = list(pending.items())
        pending.clear()
        replies = yield [call for _, step in rounds for call in step]
        start = 0
        for index, step in rounds:
            advance(index, list(replies[start : start + len(step)]))
            start += len(step)
    return tuple(results)


def _left(cursors: dict[Any, Any]) -> Any:
    """The cluster nodes a scan goes on with (by name), or 0 when all are done."""
    return {name: cursor for name, cursor in cursors.items() if int(cursor) != 0} or 0


class _Runner:
    def __init__(self, client: Any, *, cluster: bool, limit: int) -> None:
        self.client = client
        self.cluster = cluster
        self.limit = limit
        self.scripts = {name: client.register_script(src) for name, src in SCRIPTS.items()}

    def _scan_args(self, scan: Scan) -> dict[str, Any]:
        return {"match": scan.match, "count": scan.count, "_type": scan.kind}

    def _node_cursors(self, scan: Scan) -> list[tuple[Any, Any]]:
        """``(node, cursor)`` of each cluster node a later round goes on with."""
        return [(self.client.get_node(node_name=n), c) for n, c in scan.cursor.items()]

    def _split(self, step: Step) -> tuple[list[int], list[int]]:
        scripts = [i for i, call in enumerate(step) if isinstance(call, Lua)]
        plain = [i for i, call in enumerate(step) if not isinstance(call, Lua)]
        return scripts, plain

    def _queue(self, pipe: Any, call: Cmd | Lua | Scan) -> None:
        if isinstance(call, Cmd):
            getattr(pipe, call.name)(*call.args, **(call.kwargs or {}))
        elif isinstance(call, Scan):
            raise TypeError("a Scan is sent alone in its step")
        else:
            script = self.scripts[call.script]
            pipe.evalsha(script.sha, len(call.keys), *call.keys, *call.args)


class SyncRunner(_Runner):
    """Runs plans with blocking calls on a ``redis.Redis`` or ``redis.cluster.RedisCluster``."""

    def __init__(self, client: Any, *, cluster: bool, limit: int) -> None:
        super().__init__(client, cluster=cluster, limit=limit)
        self._slots = threading.BoundedSemaphore(limit)

    def run(self, plan: Plan[T]) -> T:
        """``plan``'s result, each of its steps sent by ``execute``."""
        return effects.run(plan, self.execute)

    def execute(self, step: Step) -> list[Any]:
        """The replies to ``step``, in order (see ``send``); an unreachable cluster is
        raised as ``ClusterUnreachableError``."""
        try:
            return self.send(step)
        except RedisClusterException as exc:
            if not _lost_connection(exc):
                raise
            raise ClusterUnreachableError(str(exc)) from exc

    def call(self, call: Cmd | Lua | Scan) -> Any:
        with self._slots:
            if isinstance(call, Cmd):
                return getattr(self.client, call.name)(*call.args, **(call.kwargs or {}))
            if isinstance(call, Scan):
                return self._scan(call)
            return self.scripts[call.script](keys=call.keys, args=call.args)

    def _scan(self, scan: Scan) -> tuple[Any, list[Any]]:
        args = self._scan_args(scan)
        if not self.cluster:
            return tuple(self.client.scan(scan.cursor, **args))
        if scan.cursor == 0:
            cursors, keys = self.client.scan(**args)  # every primary
        else:
            cursors, keys = {}, []
            for node, cursor in self._node_cursors(scan):
                found, more = self.client.scan(cursor, target_nodes=node, **args)
                cursors.update(found)
                keys += more
        return _left(cursors), keys

    def send(self, step: Step) -> list[Any]:
        """One command alone, else one pipeline (per node on a cluster, scripts apart)."""
        if len(step) == 1:
            return [self.call(step[0])]
        if not step:
            return []
        if not self.cluster:
            return self._pipelined(step, retry=True)
        scripts, plain = self._split(step)
        results: list[Any] = [None] * len(step)
        if plain:
            pipe = self.client.pipeline(transaction=False)
            for i in plain:
                self._queue(pipe, step[i])
            with self._slots:
                executed = pipe.execute()
            for i, value in zip(plain, executed, strict=True):
                results[i] = value
        for i in scripts:
            results[i] = self.call(step[i])
        return results

    def _pipelined(self, step: Step, *, retry: bool) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for call in step:
            self._queue(pipe, call)
        try:
            with self._slots:
                return list(pipe.execute())
        except NoScriptError:
            # The server lost its script cache (restart, SCRIPT FLUSH): load and resend.
            # Steps holding scripts are idempotent (deletes and conditional removals).
            if not retry:
                raise
            for name in {call.script for call in step if isinstance(call, Lua)}:
                self.scripts[name].sha = self.client.script_load(SCRIPTS[name])
            return self._pipelined(step, retry=False)


class AsyncRunner(_Runner):
    """Runs plans on a ``redis.asyncio.Redis`` or ``redis.asyncio.cluster.RedisCluster``."""

    def __init__(self, client: Any, *, cluster: bool, limit: int) -> None:
        super().__init__(client, cluster=cluster, limit=limit)
        self._slots = asyncio.Semaphore(limit)  # bound to the loop that first uses it

    async def run(self, plan: Plan[T]) -> T:
        """``plan``'s result, each of its steps sent by ``execute``."""
        return await effects.arun(plan, self.execute)

    async def execute(self, step: Step) -> list[Any]:
        """The replies to ``step``, in order (see ``send``); an unreachable cluster is
        raised as ``ClusterUnreachableError``."""
        try:
            return await self.send(step)
        except RedisClusterException as exc:
            if not _lost_connection(exc):
                raise
            raise ClusterUnreachableError(str(exc)) from exc

    async def call(self, call: Cmd | Lua | Scan) -> Any:
        async with self._slots:
            if isinstance(call, Cmd):
                return await getattr(self.client, call.name)(*call.args, **(call.kwargs or {}))
            if isinstance(call, Scan):
                return await self._scan(call)
            return await self.scripts[call.script](keys=call.keys, args=call.args)

    async def _scan(self, scan: Scan) -> tuple[Any, list[Any]]:
        args = self._scan_args(scan)
        if not self.cluster:
            return tuple(await self.client.scan(scan.cursor, **args))
        if scan.cursor == 0:
            cursors, keys = await self.client.scan(**args)  # every primary
        else:
            cursors, keys = {}, []
            for node, cursor in self._node_cursors(scan):
                found, more = await self.client.scan(cursor, target_nodes=node, **args)
                cursors.update(found)
                keys += more
        return _left(cursors), keys

    async def send(self, step: Step) -> list[Any]:
        """One command alone, else one pipeline (per node on a cluster, scripts concurrently)."""
        if len(step) == 1:
            return [await self.call(step[0])]
        if not step:
            return []
        if not self.cluster:
            return await self._pipelined(step, retry=True)
        scripts, plain = self._split(step)
        results: list[Any] = [None] * len(step)

        async def pipelined() -> None:
            pipe = self.client.pipeline(transaction=False)
            for i in plain:
                self._queue(pipe, step[i])
            async with self._slots:
                executed = await pipe.execute()
            for i, value in zip(plain, executed, strict=True):
                results[i] = value

        async def scripted(i: int) -> None:
            results[i] = await self.call(step[i])

        jobs = [scripted(i) for i in scripts]
        if plain:
            jobs.append(pipelined())
        await asyncio.gather(*jobs)
        return results

    async def _pipelined(self, step: Step, *, retry: bool) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for call in step:
            self._queue(pipe, call)
        try:
            async with self._slots:
                return list(await pipe.execute())
        except NoScriptError:
            if not retry:
                raise
            for name in {call.script for call in step if isinstance(call, Lua)}:
                self.scripts[name].sha = await self.client.script_load(SCRIPTS[name])
            return await self._pipelined(step, retry=False)
