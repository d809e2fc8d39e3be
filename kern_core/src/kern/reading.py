"""What people read of a database, written once for the terminal and the console.

Pages of sessions, learnings and a session's runs, as turns of the effect system
(``kern.effects``): ``kern sessions`` drives them with ``kern.performers.run_turn`` on a
sync Db, the console's API and pages with ``arun_turn`` on an async one.

Bookkeeping rows are hidden from listings: the marker session of a run whose background
learning is pending (component ``kern.learning.pending``) and the row naming the embedder
of the database's vectors. A page is still full when some were skipped, and ``offset``
counts rows a person saw.

A session's runs are read a page at a time through ``get_last_runs(before_seq=...)`` (the
``(session_id, seq)`` index): opening a session of 10,000 runs reads one page, not the
session. Runs nested in a turn (a team's member runs, stored before their leader's run; a
workflow's steps, stored after the workflow's run) are kept with it: the page is extended
at its old edge while the runs there belong to a run on the page, and down to the run that
steps on the page belong to, within a bound. A run whose parent is newer than the page (a
member whose leader is on the newer page) stays on its page, at the top level.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from pydantic import BaseModel, Field

from kern import storage
from kern.effects import Effect, Turn
from kern.learn.background import MARKER_COMPONENT
from kern.learn.machine import EMBEDDER_RECORD
from kern.records import Learning, LearningStatus, Run, Session, SessionType

T = TypeVar("T")

#: Runs on a page of a transcript unless the request says otherwise, and the most allowed.
RUN_PAGE = 50
MAX_RUN_PAGE = 500
#: Older runs read with a page, to keep a turn's nested runs with it in the same query.
LOOKAHEAD = 20
#: The most runs a page is extended by to keep nested runs with their turn.
MAX_EXTENSION = 200
#: The most parents of runs on a page looked up to find where the page must reach.
MAX_PARENT_READS = 10
#: Rows read per call while hidden rows are skipped.
ROW_PAGE = 200


class RunTree(BaseModel):
    """A run with the runs nested under it (``parent_run_id``), oldest first."""

    run: Run
    children: list[RunTree] = Field(default_factory=list)


class RunPage(BaseModel):
    """One page of a session's transcript, oldest run first.

    ``older`` is the ``before_seq`` that reads the page before this one (``None``: this
    page holds the session's oldest run). A run whose parent is not on the page is at the
    top level and keeps its ``parent_run_id``.
    """

    session: Session | None
    runs: list[RunTree]
    older: int | None


def visible_page(
    read: Callable[[int, int], Effect[list[T]]],
    hidden: Callable[[T], bool],
    limit: int,
    offset: int,
) -> Turn[list[T]]:
    """Up to ``limit`` rows of ``read(limit, offset)`` after the first ``offset`` shown ones,
    reading on while ``hidden`` rows are skipped."""
    size = min(limit + offset, ROW_PAGE)
    found: list[T] = []
    skipped = 0
    start = 0
    while True:
        rows = yield from read(size, start)
        for row in rows:
            if hidden(row):
                continue
            if skipped < offset:
                skipped += 1
                continue
            found.append(row)
            if len(found) == limit:
                return found
        if len(rows) < size:
            return found
        start += len(rows)


def is_marker(session: Session) -> bool:
    return session.component_id == MARKER_COMPONENT


def sessions_page(
    *,
    user_id: str | None = None,
    component_id: str | None = None,
    session_type: SessionType | None = None,
    markers: bool = False,
    limit: int,
    offset: int,
) -> Turn[tuple[list[Session], bool]]:
    """Sessions newest first, markers hidden unless ``markers``, and whether more follow."""
    rows = yield from visible_page(
        lambda size, start: storage.list_sessions(
            user_id=user_id,
            component_id=component_id,
            session_type=session_type,
            limit=size,
            offset=start,
        ),
        lambda session: not markers and is_marker(session),
        limit + 1,
        offset,
    )
    return rows[:limit], len(rows) > limit


def learnings_page(
    *,
    kind: str | None = None,
    status: LearningStatus | None = None,
    user_id: str | None = None,
    namespace: str | None = None,
    everything: bool = False,
    limit: int,
    offset: int,
) -> Turn[tuple[list[Learning], bool]]:
    """Learnings newest first, the embedder record hidden unless its kind is asked for
    (or ``everything``)."""

    def hidden(learning: Learning) -> bool:
        return not everything and kind is None and learning.kind == EMBEDDER_RECORD.kind

    rows = yield from visible_page(
        lambda size, start: storage.query_learnings(
            kind=kind,
            status=status,
            user_id=user_id,
            namespace=namespace,
            limit=size,
            offset=start,
        ),
        hidden,
        limit + 1,
        offset,
    )
    return rows[:limit], len(rows) > limit


def runs_page(
    session_id: str, *, limit: int = RUN_PAGE, before_seq: int | None = None
) -> Turn[tuple[list[Run], int | None]]:
    """The newest ``limit`` runs before ``before_seq`` (oldest first), extended at the old
    edge with the runs nested in its turns, and the ``before_seq`` of the older page."""
    read = yield from storage.get_last_runs(session_id, limit + LOOKAHEAD, before_seq=before_seq)
    more = len(read) == limit + LOOKAHEAD
    cut = max(len(read) - limit, 0)
    spare, runs = read[:cut], read[cut:]
    ids = {run.run_id for run in runs}
    floor = yield from _older_parent(session_id, runs, ids)
    added = 0
    while runs and added < MAX_EXTENSION:
        if not spare:
            if not more:
                break
            spare = yield from storage.get_last_runs(
                session_id, LOOKAHEAD, before_seq=_seq(runs[0])
            )
            more = len(spare) == LOOKAHEAD
            if not spare:
                break
        run = spare[-1]
        if (floor is None or _seq(run) < floor) and run.parent_run_id not in ids:
            break  # the run belongs to no turn on the page
        runs.insert(0, spare.pop())
        ids.add(run.run_id)
        added += 1
    older = bool(spare) or more
    return runs, _seq(runs[0]) if older and runs else None


def _older_parent(session_id: str, runs: list[Run], ids: set[str]) -> Turn[int | None]:
    """The lowest seq of the runs just older than the page that runs on it are nested in
    (a workflow's run, whose steps follow it): the page reaches down to it. One read by
    id per such parent, none for a page whose runs all have their parent on it."""
    if not runs:
        return None
    oldest = _seq(runs[0])
    wanted = {r.parent_run_id for r in runs if r.parent_run_id and r.parent_run_id not in ids}
    seqs = []
    for parent_id in sorted(wanted)[:MAX_PARENT_READS]:
        parent = yield from storage.get_run(parent_id)
        if parent is None or parent.session_id != session_id or parent.seq is None:
            continue
        if oldest - MAX_EXTENSION <= parent.seq < oldest:
            seqs.append(parent.seq)
    return min(seqs, default=None)


def nest(runs: list[Run]) -> list[RunTree]:
    """``runs`` (oldest first) as trees: each under its parent when the parent is here."""
    nodes = {run.run_id: RunTree(run=run) for run in runs}
    roots: list[RunTree] = []
    for run in runs:
        parent_id = run.parent_run_id
        parent = nodes.get(parent_id) if parent_id is not None and parent_id != run.run_id else None
        if parent is not None:
            parent.children.append(nodes[run.run_id])
        else:
            roots.append(nodes[run.run_id])
    return roots


def transcript_page(
    session_id: str, *, limit: int = RUN_PAGE, before_seq: int | None = None
) -> Turn[RunPage | None]:
    """The session and one page of its runs as trees; ``None`` if neither is stored."""
    session = yield from storage.get_session(session_id)
    runs, older = yield from runs_page(session_id, limit=limit, before_seq=before_seq)
    if session is None and not runs and before_seq is None:
        return None
    return RunPage(session=session, runs=nest(runs), older=older)


def newest_seq(trees: list[RunTree]) -> int | None:
    """The highest ``seq`` among ``trees`` and the runs nested in them."""
    seqs = [seq for tree in trees for seq in (tree.run.seq, newest_seq(tree.children)) if seq]
    return max(seqs, default=None)


def _seq(run: Run) -> int:
    assert run.seq is not None  # stored runs always carry their seq
    return run.seq
