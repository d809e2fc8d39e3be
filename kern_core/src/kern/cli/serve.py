"""``kern serve``: the console, a local web app and HTTP API on a kern database.

It binds 127.0.0.1 unless told otherwise and asks every request for a token: the one in
``KERN_CONSOLE_TOKEN``, else a random one printed at start. ``--read-only`` refuses every
change. The web stack (FastAPI, uvicorn, Jinja2) comes with the ``console`` extra and is
imported only when the command runs, so ``kern --help`` and the other commands never load
it; without the extra the command says what to install and exits 2.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from kern.cli.common import BAD_INPUT, OK, CommandError, add_db_option, at_least, err, out
from kern.errors import install_command

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def register(commands: Any) -> None:
    serve = commands.add_parser(
        "serve",
        help="the console: a local web app and HTTP API to see and approve what agents learn",
        description="Serve the kern console on the database: sessions and transcripts, "
        "users' memories and learnings, the proposals queue (approve / reject) and "
        "forgetting a user, as web pages and a JSON API (OpenAPI at /api/openapi.json). "
        "Every request needs the token (KERN_CONSOLE_TOKEN, else one is generated and "
        f"printed). Needs the console extra: {install_command('console')}.",
    )
    add_db_option(serve)
    serve.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"address to bind (default: {DEFAULT_HOST}, this machine only)",
    )
    serve.add_argument(
        "--port",
        type=at_least(1, int),
        default=DEFAULT_PORT,
        help=f"port to listen on (default: {DEFAULT_PORT})",
    )
    serve.add_argument(
        "--read-only",
        action="store_true",
        help="refuse every change (approve, reject, forget) and hide their buttons",
    )
    serve.set_defaults(handler=_serve)


def _serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from kern.console import create_app
        from kern.console.auth import TOKEN_ENV, new_token
    except ImportError as exc:
        raise CommandError(
            f"the console needs its extra ({exc.name or exc} is missing): "
            f"{install_command('console')}",
            BAD_INPUT,
        ) from None
    from kern.db.registry import backend_class, configured_url

    url = args.db or configured_url()
    if not url:
        raise CommandError(
            "no database: pass --db URL, set KERN_DB_URL, or put db_url in kern.toml",
            BAD_INPUT,
        )
    backend_class(url, is_async=True)  # a bad URL or a missing backend fails here, exit 2
    token = os.environ.get(TOKEN_ENV) or new_token()
    try:
        app = create_app(url=url, token=token, read_only=args.read_only)
    except ValueError as exc:
        raise CommandError(str(exc), BAD_INPUT) from None
    if args.host not in LOOPBACK:
        err.print(
            f"warning: listening on {args.host}: anyone who can reach it may try the token, "
            "and the console speaks plain HTTP (put it behind TLS to use it remotely)",
            markup=False,
        )
    shown = f"[{args.host}]" if ":" in args.host else args.host
    out.print(f"kern console on http://{shown}:{args.port}/", markup=False)
    if os.environ.get(TOKEN_ENV):
        out.print(f"token: the value of {TOKEN_ENV}", markup=False)
    else:
        out.print(f"token: {token}", markup=False)
    if args.read_only:
        out.print("read-only: every change is refused", markup=False)
    out.file.flush()
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return OK
