"""Secondary indexes that live in other hash slots than their records, kept correct without
multi-slot transactions.

An index is a sorted set (member: record id, score: the record's updated_at in µs). On
Redis Cluster the record and its indexes are in different slots, so no transaction spans
them. The order of writes is what keeps them correct:

1. a writer adds the record to its NEW indexes first,
2. then writes the record (one atomic script in the record's slot),
3. then removes the record from indexes the version it replaced was in and it is not, and
   adds it to its own again (a slower writer of an older version may have just removed
   entries the two versions share),
4. and, if it removed anything and finds that a newer version has landed meanwhile, adds
   that version's entries again.

So an index never misses a record it should hold, even with several writers of one record
at once (a crash leaves at worst an extra entry), and everything found through an index is
checked against the record itself before it is returned: an entry whose record is gone, or
no longer matches, is skipped. A reader removes such an entry only when it is older than
``GRACE_US`` (a writer between steps 1 and 2 is never that slow) and only if its score is
still the one it saw (``zrem_if_score``), so a writer that re-added it meanwhile keeps it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from kern.db.redis.codec import micros, text
from kern.db.redis.keys import Keys
from kern.db.redis.plans import Cmd, Lua, Plan
from kern.records import utcnow

R = TypeVar("R")

#: Age (µs) after which a reader may drop an index entry whose record is gone or moved.
GRACE_US = 60_000_000


@dataclass(frozen=True)
class Ctx:
    """What every operation needs: key names, the session TTL, and the deployment kind."""

    keys: Keys
    #: Seconds a session lives after its last write (0: forever).
    ttl: int
    #: Redis Cluster: multi-key reads go through redis-py's slot-splitting variants.
    cluster: bool

    def mget(self, names: Sequence[str]) -> Cmd:
        return Cmd("mget_nonatomic" if self.cluster else "mget", list(names))


def now_us() -> int:
    return micros(utcnow())


def add_to(entries: Iterable[str], member: str, score: int, **flags: bool) -> list[Cmd]:
    return [Cmd("zadd", key, {member: score}, **flags) for key in entries]


def remove_from(entries: Iterable[str], member: str) -> list[Cmd]:
    return [Cmd("zrem", key, member) for key in entries]


def add_many(entries: Iterable[tuple[str, str, int]]) -> list[Cmd]:
    """``add_to`` for many records at once (a bulk import): ``(index, member, score)``
    entries, one ``ZADD`` per index with all of its members."""
    by_index: dict[str, dict[str, int]] = {}
    for index, member, score in entries:
        by_index.setdefault(index, {})[member] = score
    return [Cmd("zadd", index, members) for index, members in by_index.items()]


def remove_many(entries: Iterable[tuple[str, str]]) -> list[Cmd]:
    """``remove_from`` for many records at once: one ``ZREM`` per index."""
    by_index: dict[str, list[str]] = {}
    for index, member in entries:
        by_index.setdefault(index, []).append(member)
    return [Cmd("zrem", index, *members) for index, members in by_index.items()]


def register(keys: Keys, user_id: str | None, names: Iterable[str]) -> list[Cmd]:
    """Record the user-slot keys among ``names`` in that user's registry."""
    if user_id is None:
        return []
    base = keys.user_base(user_id)
    mine = sorted({name for name in names if name.startswith(base)})
    return [Cmd("sadd", keys.user_registry(user_id), *mine)] if mine else []


def prune(dead: Iterable[tuple[str, str, float]]) -> list[Lua]:
    """Drop stale entries ``(index, member, score)`` older than the grace period."""
    horizon = now_us() - GRACE_US
    return [
        Lua("zrem_if_score", (index,), (member, repr(int(score))))
        for index, member, score in dead
        if score < horizon
    ]


def walk(
    index: str,
    offset: int,
    limit: int,
    fetch: Callable[[list[str]], Plan[list[R | None]]],
    accept: Callable[[R], bool],
) -> Plan[list[R]]:
    """Records ``offset:offset+limit`` of ``index`` (newest first) that pass ``accept``.

    Reads windows of entries, fetches their records and skips what no longer matches, so
    the page is exact even when the index holds stale entries. Cost: the entries up to the
    end of the page (as SQL's OFFSET), plus any stale ones among them.
    """
    found: list[R] = []
    if limit <= 0:
        return found
    offset = max(offset, 0)
    skipped, position, window = 0, 0, offset + limit + 4
    while len(found) < limit:
        last = position + window - 1
        (entries,) = yield [Cmd("zrevrange", index, position, last, withscores=True)]
        if not entries:
            break
        members = [text(member) for member, _ in entries]
        records = yield from fetch(members)
        dead: list[tuple[str, str, float]] = []
        for member, (_, score), record in zip(members, entries, records, strict=True):
            if record is None or not accept(record):
                dead.append((index, member, score))
            elif skipped < offset:
                skipped += 1
            elif len(found) < limit:
                found.append(record)
        stale = prune(dead)
        if stale:
            yield stale
        if len(entries) < window:
            break
        position += window
        window *= 2
    return found
