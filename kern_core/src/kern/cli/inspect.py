"""``kern sessions``, ``kern show``, ``kern memories``, ``kern learnings``, ``kern profile``:
what a database holds, read without changing anything.

kern keeps some bookkeeping rows among the records: a marker session per run whose
background learning is pending (``kern.learn.background``) and the row naming the embedder
of the database's vectors (``kern.learn.machine.EMBEDDER_RECORD``). Listings hide them
unless ``--all`` is given (or their component or kind is asked for by name).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from rich.json import JSON
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from kern.cli.common import (
    OK,
    CommandError,
    add_db_option,
    add_json_option,
    at_least,
    cell,
    check_ids,
    compact,
    open_db,
    out,
    print_json,
    short,
    when,
)
from kern.db.base import BaseDb
from kern.records import LearningStatus, Message, Run, SessionType

T = TypeVar("T")

#: Runs read per ``get_last_runs`` call while a transcript is assembled.
RUN_PAGE = 50
#: Rows read per call when a listing skips bookkeeping rows or a count walks a user's rows.
ROW_PAGE = 500
#: Characters of one message shown in a transcript (``--json`` has all of it).
MESSAGE_WIDTH = 300
#: Characters of a run's id in a transcript's labels (``--json`` has the whole id).
RUN_ID_WIDTH = 8


def register(commands: Any) -> None:
    sessions = commands.add_parser(
        "sessions",
        help="list sessions, newest first",
        description="List sessions (newest updated first) with their type, component, user "
        "and version. Background-learning markers are hidden unless --all.",
    )
    add_db_option(sessions)
    sessions.add_argument("--user", metavar="USER_ID", help="only this user's sessions")
    sessions.add_argument(
        "--type", choices=[t.value for t in SessionType], help="only sessions of this type"
    )
    sessions.add_argument("--component", metavar="ID", help="only this agent, team or workflow")
    _add_paging(sessions, 20)
    sessions.add_argument(
        "--all", action="store_true", help="also kern's background-learning marker sessions"
    )
    add_json_option(sessions)
    sessions.set_defaults(handler=_sessions)

    show = commands.add_parser(
        "show",
        help="one session: its state and its transcript",
        description="Show a session (state, version, summary, metadata) and its transcript: "
        "the newest runs, with team member and workflow step runs under their parent.",
    )
    add_db_option(show)
    show.add_argument("session_id", metavar="SESSION_ID")
    show.add_argument(
        "--runs",
        type=_run_count,
        default=20,
        metavar="N",
        help="show the newest N turns, with their member runs (default: 20; 'all' for all)",
    )
    add_json_option(show)
    show.set_defaults(handler=_show)

    memories = commands.add_parser(
        "memories",
        help="a user's memories, newest first, or ranked for --search",
        description="List a user's memories, newest first; with --search, the memories a "
        "turn's recall would rank highest for TEXT, with their scores.",
    )
    add_db_option(memories)
    memories.add_argument("user", metavar="USER_ID")
    memories.add_argument("--search", metavar="TEXT", help="rank the memories for this text")
    _add_paging(memories, 50)
    add_json_option(memories)
    memories.set_defaults(handler=_memories)

    learnings = commands.add_parser(
        "learnings",
        help="learnings (profiles, entities, insights, proposals...), newest first",
        description="List learnings matching every filter given, newest updated first.",
    )
    add_db_option(learnings)
    learnings.add_argument("--kind", metavar="KIND", help="e.g. user_profile, entity_memory")
    learnings.add_argument("--status", choices=[s.value for s in LearningStatus])
    learnings.add_argument("--user", metavar="USER_ID", help="only this user's learnings")
    learnings.add_argument("--namespace", metavar="NS", help="e.g. global, user")
    _add_paging(learnings, 50)
    learnings.add_argument("--all", action="store_true", help="also kern's bookkeeping rows")
    add_json_option(learnings)
    learnings.set_defaults(handler=_learnings)

    profile = commands.add_parser(
        "profile",
        help="what kern knows of a user: profile fields, memory and learning counts",
        description="Show the user's profile (the active user_profile learning) and how many "
        "memories and learnings the user has.",
    )
    add_db_option(profile)
    profile.add_argument("user", metavar="USER_ID")
    add_json_option(profile)
    profile.set_defaults(handler=_profile)


def _add_paging(parser: argparse.ArgumentParser, default: int) -> None:
    parser.add_argument(
        "--limit",
        type=at_least(1, int),
        default=default,
        metavar="N",
        help=f"show at most N (default: {default})",
    )
    parser.add_argument(
        "--offset", type=at_least(0, int), default=0, metavar="N", help="skip the first N"
    )


def _run_count(text: str) -> int | None:
    """``--runs``: a count of turns, or ``all`` (``None``)."""
    return None if text.strip().lower() == "all" else at_least(0, int)(text)


def _count(read: Callable[[int, int], list[T]]) -> list[T]:
    """Every row ``read(limit, offset)`` gives, page by page (for counts)."""
    rows: list[T] = []
    while True:
        page = read(ROW_PAGE, len(rows))
        rows += page
        if len(page) < ROW_PAGE:
            return rows


# -- kern sessions ------------------------------------------------------------------------
def _sessions(args: argparse.Namespace) -> int:
    from kern.performers import run_turn
    from kern.reading import sessions_page

    check_ids("--user", args.user)
    check_ids("--component", args.component)
    session_type = SessionType(args.type) if args.type else None
    with open_db(args.db) as db:
        rows, more = run_turn(
            sessions_page(
                user_id=args.user,
                component_id=args.component,
                session_type=session_type,
                markers=args.all or args.component is not None,
                limit=args.limit,
                offset=args.offset,
            ),
            db,
        )
        target = db.storage_target()
    if args.json:
        print_json(rows)
        return OK
    if not rows:
        out.print(f"no sessions{' on this page' if args.offset else ''} in {target}", markup=False)
        return OK
    out.print(Text(f"sessions in {target}", style="bold"))
    table = Table()
    table.add_column("id", overflow="fold")
    for name in ("type", "component", "user", "name"):
        table.add_column(name)
    table.add_column("updated")
    table.add_column("version", justify="right")
    for session in rows:
        table.add_row(
            Text(session.session_id),
            session.session_type.value,
            cell(session.component_id, 30),
            cell(session.user_id, 30),
            cell(session.name, 40),
            when(session.updated_at),
            str(session.version),
        )
    out.print(table)
    _more(more, args)
    return OK


def _more(more: bool, args: argparse.Namespace) -> None:
    if more:
        out.print(f"more follow: --offset {args.offset + args.limit}", style="dim")


# -- kern show ----------------------------------------------------------------------------
def newest_runs(db: BaseDb, session_id: str) -> Iterator[Run]:
    """The session's runs, newest first, read through the ``(session_id, seq)`` index a
    page at a time (``get_last_runs`` with ``before_seq``)."""
    before: int | None = None
    while True:
        page = db.get_last_runs(session_id, RUN_PAGE, before_seq=before)
        yield from reversed(page)
        if len(page) < RUN_PAGE or page[0].seq is None:
            return
        before = page[0].seq


def transcript(db: BaseDb, session_id: str, turns: int | None) -> tuple[list[Run], bool]:
    """The newest ``turns`` top-level runs (``None``: all) with every run nested under them,
    oldest first, and whether older runs exist.

    A turn's nested runs sit next to it by ``seq``: a team's member runs are stored before
    their leader's run, a workflow's steps after the workflow's. So the runs are read
    newest first until ``turns`` top-level ones are in, then on while the runs read
    belong to one of them (the oldest leader's members).
    """
    runs: list[Run] = []
    ids: set[str] = set()
    top = 0
    for run in newest_runs(db, session_id):
        if turns is not None and top >= turns and run.parent_run_id not in ids:
            return runs[::-1], True
        runs.append(run)
        ids.add(run.run_id)
        top += run.parent_run_id is None
    return runs[::-1], False


def _show(args: argparse.Namespace) -> int:
    check_ids("SESSION_ID", args.session_id)
    with open_db(args.db) as db:
        session = db.get_session(args.session_id)
        runs, older = transcript(db, args.session_id, args.runs)
        target = db.storage_target()
    if session is None and not runs:
        raise CommandError(
            f"no session {args.session_id!r} in {target} (`kern sessions` lists them)"
        )
    if args.json:
        print_json({"session": session, "runs": runs, "older_runs": older})
        return OK
    if session is None:
        out.print(
            Text(
                f"session {args.session_id} has runs but no session row (a workflow that "
                "logged before saving its state)"
            )
        )
    else:
        info = Table.grid(padding=(0, 2))
        info.add_column(style="bold")
        info.add_column()
        info.add_row("session", Text(session.session_id))
        for label, value in (
            ("type", session.session_type.value),
            ("component", session.component_id),
            ("user", session.user_id),
            ("name", session.name),
            ("version", str(session.version)),
            ("created", when(session.created_at)),
            ("updated", when(session.updated_at)),
            ("summary", session.summary),
        ):
            if value:
                info.add_row(label, Text(value))
        out.print(info)
        for label, data in (("state", session.state), ("metadata", session.metadata)):
            if data:
                out.print(Text(label, style="bold"))
                out.print(JSON.from_data(data, ensure_ascii=False))
    out.print(_transcript_tree(runs, older, args.runs))
    return OK


def _transcript_tree(runs: list[Run], older: bool, turns: int | None) -> Tree:
    shown = sum(run.parent_run_id is None for run in runs)
    title = f"transcript: {shown} turn{'s' if shown != 1 else ''}"
    if older:
        title += f" (the newest {turns}; older ones with --runs all)"
    tree = Tree(Text(title, style="bold"))
    ids = {run.run_id for run in runs}
    children: dict[str | None, list[Run]] = defaultdict(list)
    for run in runs:
        children[run.parent_run_id if run.parent_run_id in ids else None].append(run)

    def add(parent: Tree, run: Run) -> None:
        """The run's messages, its nested runs before its final answer, then its output."""
        branch = parent.add(_run_label(run, nested=run.parent_run_id in ids))
        lines = _run_lines(run)
        answer = run.messages[-1] if run.messages else None
        final = answer is not None and answer.role == "assistant" and not answer.tool_calls
        tail = [lines.pop()] if final and lines else []
        for line in lines:
            branch.add(line)
        for child in children.get(run.run_id, []):
            add(branch, child)
        output = _output_line(run)
        for line in tail if output is None else [*tail, output]:
            branch.add(line)

    for run in children[None]:
        add(tree, run)
    return tree


def _run_label(run: Run, *, nested: bool) -> Text:
    label = Text(f"#{run.seq} ", style="bold")
    label.append(run.component_id or "run")
    label.append(f"  {run.status.value}", style="green" if run.status == "completed" else "red")
    label.append(f"  {when(run.created_at)}  run {run.run_id[:RUN_ID_WIDTH]}", style="dim")
    if run.parent_run_id is not None and not nested:
        label.append(f"  (part of run {run.parent_run_id}, not shown)", style="dim")
    return label


def _run_lines(run: Run) -> list[Text]:
    """The run's messages, one line each; its input first when no user message holds it."""
    lines: list[Text] = []
    if run.input is not None and not any(m.role == "user" for m in run.messages):
        lines.append(_line("input", _as_text(run.input)))
    for message in run.messages:
        lines += _message_lines(message)
    return lines


def _message_lines(message: Message) -> list[Text]:
    lines: list[Text] = []
    if message.role == "tool":
        name = message.name or message.tool_call_id or ""
        lines.append(_line(f"tool {name}".strip(), message.content or ""))
    elif message.content or not message.tool_calls:
        lines.append(_line(message.role, message.content or ""))
    for call in message.tool_calls or []:
        lines.append(_line(f"{message.role} calls", f"{call.name}({call.arguments})"))
    return lines


def _output_line(run: Run) -> Text | None:
    """The run's output, unless it is the last assistant message shown already."""
    if run.output is None:
        return None
    said = [m.content for m in run.messages if m.role == "assistant" and m.content]
    text = _as_text(run.output)
    return None if said and said[-1] == text else _line("output", text)


def _line(label: str, text: str) -> Text:
    line = Text(f"{label}: ", style="cyan")
    line.append(short(text, MESSAGE_WIDTH))
    return line


def _as_text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


# -- kern memories ------------------------------------------------------------------------
def _memories(args: argparse.Namespace) -> int:
    from kern.learn.machine import LearningMachine

    check_ids("USER_ID", args.user)
    with open_db(args.db) as db:
        if args.search is None:
            memories = db.list_memories(args.user, limit=args.limit, offset=args.offset)
            scores: list[float] | None = None
        else:
            hits = LearningMachine(db=db).search_memories(args.user, args.search, args.limit)
            memories = [hit.memory for hit in hits]
            scores = [hit.score for hit in hits]
        target = db.storage_target()
    if args.json:
        if scores is None:
            print_json(memories)
        else:
            print_json([{"memory": m, "score": s} for m, s in zip(memories, scores, strict=True)])
        return OK
    if not memories:
        what = f"matching {args.search!r}" if args.search is not None else "stored"
        out.print(f"no memories of user {args.user!r} {what} in {target}", markup=False)
        return OK
    title = f"memories of {args.user}" + (f" ranked for {args.search!r}" if scores else "")
    out.print(Text(title, style="bold"))
    table = Table()
    if scores is not None:
        table.add_column("score", justify="right")
    table.add_column("id", overflow="fold")
    table.add_column("memory")
    for name in ("topics", "agent"):
        table.add_column(name)
    table.add_column("updated")
    for index, memory in enumerate(memories):
        row: list[Text | str] = [
            Text(memory.memory_id),
            cell(memory.content, 80),
            cell(", ".join(memory.topics), 30),
            cell(memory.agent_id, 20),
            when(memory.updated_at),
        ]
        if scores is not None:
            row.insert(0, f"{scores[index]:.3f}")
        table.add_row(*row)
    out.print(table)
    if scores is None:
        _more(len(memories) == args.limit, args)
    return OK


# -- kern learnings -----------------------------------------------------------------------
def _learnings(args: argparse.Namespace) -> int:
    from kern.performers import run_turn
    from kern.reading import learnings_page

    check_ids("--user", args.user)
    check_ids("--kind", args.kind)
    check_ids("--namespace", args.namespace)
    status = LearningStatus(args.status) if args.status else None
    with open_db(args.db) as db:
        rows, more = run_turn(
            learnings_page(
                kind=args.kind,
                namespace=args.namespace,
                user_id=args.user,
                status=status,
                everything=args.all,
                limit=args.limit,
                offset=args.offset,
            ),
            db,
        )
        target = db.storage_target()
    if args.json:
        print_json(rows)
        return OK
    if not rows:
        out.print(f"no learnings match in {target}", markup=False)
        return OK
    out.print(Text(f"learnings in {target}", style="bold"))
    table = Table()
    table.add_column("id", overflow="fold")
    for name in ("kind", "status", "user"):
        table.add_column(name)
    table.add_column("content")
    table.add_column("updated")
    for learning in rows:
        table.add_row(
            Text(learning.learning_id),
            Text(learning.kind),
            learning.status.value,
            cell(learning.user_id, 30),
            cell(compact(learning.content), 80),
            when(learning.updated_at),
        )
    out.print(table)
    _more(more, args)
    return OK


# -- kern profile -------------------------------------------------------------------------
def _profile(args: argparse.Namespace) -> int:
    from kern.learn.stores import UserProfileStore

    user = args.user
    check_ids("USER_ID", user)
    with open_db(args.db) as db:
        found = db.query_learnings(
            kind=UserProfileStore.kind, user_id=user, status=LearningStatus.ACTIVE, limit=1
        )
        memories = len(
            _count(lambda limit, offset: db.list_memories(user, limit=limit, offset=offset))
        )
        learnings = _count(
            lambda limit, offset: db.query_learnings(user_id=user, limit=limit, offset=offset)
        )
        target = db.storage_target()
    profile = found[0] if found else None
    by_status = Counter(learning.status.value for learning in learnings)
    counts = {status.value: by_status[status.value] for status in LearningStatus}
    if args.json:
        print_json({"user_id": user, "profile": profile, "memories": memories, "learnings": counts})
        return OK
    if profile is None:
        out.print(f"no profile stored for user {user!r} in {target}", markup=False)
    else:
        heading = f"profile of {user} (updated {when(profile.updated_at)})"
        out.print(Text(heading, style="bold"))
        table = Table("field", "value")
        for name, value in profile.content.items():
            if value in (None, "", [], {}):
                continue
            shown = "; ".join(map(str, value)) if isinstance(value, list) else _as_text(value)
            table.add_row(Text(name.replace("_", " ")), Text(shown))
        out.print(table)
        out.print(f"profile learning {profile.learning_id}", style="dim", markup=False)
    summary = ", ".join(f"{count} {status}" for status, count in counts.items() if count)
    out.print(f"memories: {memories}", markup=False)
    total = sum(counts.values())
    out.print(f"learnings: {total}" + (f" ({summary})" if summary else ""), markup=False)
    return OK
