"""The curator: keeps stored memories and learnings healthy.

- ``prune`` removes items older than ``max_age_days`` (age = time since the item was first
  stored, its ``created_at``) and, per user and kind, all but the newest ``max_count``.
- ``deduplicate`` removes exact duplicates (same text once casefolded, with punctuation and
  extra whitespace removed) and near-duplicates (token Jaccard similarity >= ``threshold``;
  with an embedder, also embedding cosine >= ``embedding_threshold``). Of each group of
  duplicates the newest item is kept.

Both look at user memories by default (``kinds=("user_memory",)``); other store kinds
(their *active* rows in ``kern_learnings``) can be named. ``dry_run=True`` changes nothing
and returns exactly what a real run would remove now; a real run returns what it removed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from kern import storage
from kern.effects import Call, Turn
from kern.errors import ConfigurationError
from kern.ids import check_id
from kern.learn.text import cosine, normalise, prefix_length, token_set
from kern.records import LearningStatus, utcnow

if TYPE_CHECKING:
    from kern.learn.machine import LearningMachine

#: Rows read per query while the curator enumerates a user's items.
PAGE = 500
MEMORY_KIND = "user_memory"


@dataclass(frozen=True)
class CuratedItem:
    """An item the curator removes (or, in a dry run, would remove)."""

    id: str
    kind: str
    user_id: str | None
    text: str
    #: "age", "count", "exact duplicate", "near duplicate" or "embedding duplicate".
    reason: str
    created_at: datetime
    #: For duplicates: the id of the item kept in its place.
    duplicate_of: str | None = None


@dataclass(frozen=True)
class CurationReport:
    """What ``prune`` / ``deduplicate`` removed, or would remove (``dry_run``)."""

    action: str
    dry_run: bool
    items: list[CuratedItem] = field(default_factory=list)

    @property
    def ids(self) -> list[str]:
        return [item.id for item in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[CuratedItem]:
        return iter(self.items)


@dataclass(frozen=True)
class _Item:
    id: str
    kind: str
    namespace: str | None
    user_id: str | None
    text: str
    created_at: datetime
    updated_at: datetime
    is_memory: bool

    def removed(self, reason: str, duplicate_of: str | None = None) -> CuratedItem:
        return CuratedItem(
            self.id, self.kind, self.user_id, self.text, reason, self.created_at, duplicate_of
        )


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def _newest_first(items: list[_Item]) -> list[_Item]:
    return sorted(items, key=lambda i: (i.created_at, i.updated_at, i.id), reverse=True)


class Curator:
    """``lm.curator``: maintenance of the machine's db (see the module docs)."""

    def __init__(self, machine: LearningMachine) -> None:
        self.machine = machine

    # -- public API ------------------------------------------------------------------
    def prune(
        self,
        user_id: str | None = None,
        *,
        max_age_days: float | None = None,
        max_count: int | None = None,
        kinds: Sequence[str] = (MEMORY_KIND,),
        namespace: str | None = None,
        dry_run: bool = False,
    ) -> CurationReport:
        """Remove items older than ``max_age_days`` and beyond the newest ``max_count``."""
        turn = self._prune(user_id, max_age_days, max_count, kinds, namespace, dry_run)
        return self.machine._sync(turn, "curator.prune", "curator.aprune")

    async def aprune(
        self,
        user_id: str | None = None,
        *,
        max_age_days: float | None = None,
        max_count: int | None = None,
        kinds: Sequence[str] = (MEMORY_KIND,),
        namespace: str | None = None,
        dry_run: bool = False,
    ) -> CurationReport:
        turn = self._prune(user_id, max_age_days, max_count, kinds, namespace, dry_run)
        return await self.machine._async(turn)

    def deduplicate(
        self,
        user_id: str | None = None,
        *,
        kinds: Sequence[str] = (MEMORY_KIND,),
        namespace: str | None = None,
        threshold: float = 0.85,
        embedding_threshold: float = 0.95,
        dry_run: bool = False,
    ) -> CurationReport:
        """Remove exact and near-duplicates, keeping the newest of each group."""
        turn = self._deduplicate(user_id, kinds, namespace, threshold, embedding_threshold, dry_run)
        return self.machine._sync(turn, "curator.deduplicate", "curator.adeduplicate")

    async def adeduplicate(
        self,
        user_id: str | None = None,
        *,
        kinds: Sequence[str] = (MEMORY_KIND,),
        namespace: str | None = None,
        threshold: float = 0.85,
        embedding_threshold: float = 0.95,
        dry_run: bool = False,
    ) -> CurationReport:
        turn = self._deduplicate(user_id, kinds, namespace, threshold, embedding_threshold, dry_run)
        return await self.machine._async(turn)

    # -- the turns ---------------------------------------------------------------------
    def _prune(
        self,
        user_id: str | None,
        max_age_days: float | None,
        max_count: int | None,
        kinds: Sequence[str],
        namespace: str | None,
        dry_run: bool,
    ) -> Turn[CurationReport]:
        if max_age_days is None and max_count is None:
            raise ConfigurationError("prune needs max_age_days=, max_count= or both")
        if max_age_days is not None and max_age_days < 0:
            raise ConfigurationError("max_age_days must be 0 or more")
        if max_count is not None and max_count < 0:
            raise ConfigurationError("max_count must be 0 or more")
        cutoff = utcnow() - timedelta(days=max_age_days) if max_age_days is not None else None
        plan: list[tuple[_Item, CuratedItem]] = []
        for group in (yield from self._groups(user_id, kinds, namespace)):
            fresh: list[_Item] = []
            for item in _newest_first(group):
                if cutoff is not None and item.created_at < cutoff:
                    plan.append((item, item.removed("age")))
                else:
                    fresh.append(item)
            if max_count is not None:
                plan += [(item, item.removed("count")) for item in fresh[max_count:]]
        return (yield from self._apply("prune", plan, dry_run))

    def _deduplicate(
        self,
        user_id: str | None,
        kinds: Sequence[str],
        namespace: str | None,
        threshold: float,
        embedding_threshold: float,
        dry_run: bool,
    ) -> Turn[CurationReport]:
        if not 0 < threshold <= 1 or not 0 < embedding_threshold <= 1:
            raise ConfigurationError("thresholds must be in (0, 1]")
        embedder = self.machine.embedder
        plan: list[tuple[_Item, CuratedItem]] = []
        for group in (yield from self._groups(user_id, kinds, namespace)):
            items = _newest_first(group)
            vectors: list[list[float]] | None = None
            if embedder is not None and len(items) > 1:
                texts = [item.text for item in items]
                vectors = yield from Call(embedder.embed, {"texts": texts})
            plan += [
                (items[index], removed)
                for index, removed in find_duplicates(
                    items, threshold, vectors, embedding_threshold
                )
            ]
        return (yield from self._apply("deduplicate", plan, dry_run))

    # -- helpers -----------------------------------------------------------------------
    def _groups(
        self, user_id: str | None, kinds: Sequence[str], namespace: str | None
    ) -> Turn[list[list[_Item]]]:
        """The items to curate, grouped by (kind, namespace, user)."""
        check_id("user_id", user_id, optional=True)
        if isinstance(kinds, str):
            kinds = [kinds]
        groups: dict[tuple[str, str | None, str | None], list[_Item]] = defaultdict(list)
        for kind in kinds:
            if kind == MEMORY_KIND:
                if user_id is None:
                    raise ConfigurationError("user memories are curated per user: pass user_id=...")
                for item in (yield from self._memories(user_id)):
                    groups[(kind, None, user_id)].append(item)
            else:
                for item in (yield from self._learnings(kind, user_id, namespace)):
                    groups[(kind, item.namespace, item.user_id)].append(item)
        return list(groups.values())

    def _memories(self, user_id: str) -> Turn[list[_Item]]:
        items: list[_Item] = []
        offset = 0
        while True:
            page = yield from storage.list_memories(user_id, limit=PAGE, offset=offset)
            items += [
                _Item(
                    m.memory_id,
                    MEMORY_KIND,
                    None,
                    m.user_id,
                    m.content,
                    _aware(m.created_at),
                    _aware(m.updated_at),
                    True,
                )
                for m in page
            ]
            if len(page) < PAGE:
                return items
            offset += PAGE

    def _learnings(
        self, kind: str, user_id: str | None, namespace: str | None
    ) -> Turn[list[_Item]]:
        store = self.machine.store(kind)
        items: list[_Item] = []
        offset = 0
        while True:
            page = yield from storage.query_learnings(
                kind=kind,
                user_id=user_id,
                namespace=namespace,
                status=LearningStatus.ACTIVE,
                limit=PAGE,
                offset=offset,
            )
            items += [
                _Item(
                    row.learning_id,
                    kind,
                    row.namespace,
                    row.user_id,
                    store.item_text(row.content),
                    _aware(row.created_at),
                    _aware(row.updated_at),
                    False,
                )
                for row in page
            ]
            if len(page) < PAGE:
                return items
            offset += PAGE

    def _apply(
        self, action: str, plan: list[tuple[_Item, CuratedItem]], dry_run: bool
    ) -> Turn[CurationReport]:
        plan.sort(key=lambda pair: (pair[0].kind, pair[0].created_at, pair[0].id))
        if not dry_run:
            for item, _ in plan:
                delete = storage.delete_memory if item.is_memory else storage.delete_learning
                yield from delete(item.id)
        return CurationReport(action, dry_run, [removed for _, removed in plan])


def find_duplicates(
    items: Sequence[_Item] | Sequence[Any],
    threshold: float,
    vectors: Sequence[Sequence[float]] | None = None,
    embedding_threshold: float = 0.95,
) -> list[tuple[int, CuratedItem]]:
    """Indexes of ``items`` (given newest first) that duplicate an earlier (newer) kept item.

    Exact duplicates by normalised text; near-duplicates by token Jaccard >= ``threshold``,
    found with prefix filtering (tokens ordered rarest first; two sets that similar must
    share a token among their first ``prefix_length`` ones), so the cost follows the
    number of candidate pairs, not the square of the item count; with ``vectors``, also
    cosine >= ``embedding_threshold`` against every kept item.
    """
    norms = [normalise(item.text) for item in items]
    sets = [token_set(item.text) for item in items]
    frequency: dict[str, int] = defaultdict(int)
    for tokens in sets:
        for token in tokens:
            frequency[token] += 1
    ordered = [sorted(tokens, key=lambda t: (frequency[t], t)) for tokens in sets]

    exact: dict[str, int] = {}
    index: dict[str, list[int]] = defaultdict(list)
    kept: list[int] = []
    found: list[tuple[int, CuratedItem]] = []
    for i, item in enumerate(items):
        if norms[i] in exact:
            found.append((i, item.removed("exact duplicate", items[exact[norms[i]]].id)))
            continue
        match = _similar(i, sets, ordered, index, threshold)
        reason = "near duplicate"
        if match is None and vectors is not None:
            match = next(
                (k for k in kept if cosine(vectors[i], vectors[k]) >= embedding_threshold),
                None,
            )
            reason = "embedding duplicate"
        if match is not None:
            found.append((i, item.removed(reason, items[match].id)))
            continue
        exact[norms[i]] = i
        kept.append(i)
        for token in ordered[i][: prefix_length(len(ordered[i]), threshold)]:
            index[token].append(i)
    return found


def _similar(
    i: int,
    sets: list[frozenset[str]],
    ordered: list[list[str]],
    index: dict[str, list[int]],
    threshold: float,
) -> int | None:
    """The first kept item whose token Jaccard with item ``i`` is >= ``threshold``."""
    tokens = sets[i]
    if not tokens:
        return None
    seen: set[int] = set()
    for token in ordered[i][: prefix_length(len(ordered[i]), threshold)]:
        for candidate in index.get(token, ()):
            if candidate in seen:
                continue
            seen.add(candidate)
            other = sets[candidate]
            if len(tokens & other) / len(tokens | other) >= threshold:
                return candidate
    return None


__all__ = ["CuratedItem", "CurationReport", "Curator", "find_duplicates"]
