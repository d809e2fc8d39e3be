"""``kern fork``: a new session holding a session's turns up to a seq (``db.fork_session``).

The new session continues from that turn: ``agent.run(..., session_id=<new id>)``. The
source is left as it is; the new session names it in ``metadata["forked_from"]``.
"""

from __future__ import annotations

import argparse
from typing import Any

from kern.cli.common import (
    OK,
    add_db_option,
    add_json_option,
    at_least,
    check_ids,
    open_db,
    out,
    print_json,
)
from kern.records import new_id


def register(commands: Any) -> None:
    fork = commands.add_parser(
        "fork",
        help="copy a session's turns up to a seq into a new session, to continue from there",
        description="Make a new session whose history is SESSION's runs up to --at-seq (and "
        "the state that turn left), and print its id. SESSION is not changed.",
    )
    add_db_option(fork)
    fork.add_argument("session", metavar="SESSION")
    fork.add_argument(
        "--at-seq",
        type=at_least(1, int),
        required=True,
        metavar="N",
        help="the seq of the last turn to keep (`kern runs SESSION` shows them)",
    )
    fork.add_argument("--new-id", metavar="ID", help="the new session's id (default: a fresh one)")
    add_json_option(fork)
    fork.set_defaults(handler=_fork)


def _fork(args: argparse.Namespace) -> int:
    new_session_id = args.new_id or new_id()
    check_ids("SESSION", args.session)
    check_ids("--new-id", new_session_id)
    with open_db(args.db) as db:
        fork = db.fork_session(args.session, at_seq=args.at_seq, new_session_id=new_session_id)
    if args.json:
        print_json(fork)
    else:
        out.print(
            f"forked {args.session} at seq {args.at_seq} into {fork.session_id}",
            markup=False,
            soft_wrap=True,
        )
    return OK
