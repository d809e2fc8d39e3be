"""The ``kern`` command: run the demo, look into a database, act on it, move it.

Each group of commands lives in a module of its own with a ``register(commands)`` function
that adds its subcommands and sets each one's ``handler``; this module builds the parser,
runs the handler and turns the errors a person can fix into one line and an exit code
(``kern.cli.common``). ``--debug`` (or ``KERN_DEBUG=1``) shows the traceback instead.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping

from kern import __version__
from kern.cli.common import BAD_INPUT, FAILED, OK, CommandError, err, out

#: The modules holding the command groups, in the order ``kern --help`` lists them.
COMMAND_MODULES = ("inspect", "act", "fork", "retention", "move", "rotate", "doctor", "serve")


def _plugins(_: argparse.Namespace) -> int:
    from rich.table import Table

    from kern.plugins import plugin_names, registry

    reg = registry()
    table = Table("backend", "schemes", "async schemes")
    for backend in reg.backends.values():
        table.add_row(backend.name, ", ".join(backend.schemes), ", ".join(backend.async_schemes))
    out.print(table)
    out.print("model providers: " + ", ".join(sorted(reg.models)), markup=False)
    out.print("learning stores: " + learning_stores_line(reg.learning_stores), markup=False)
    out.print("plugins loaded: " + ", ".join(plugin_names()), markup=False)
    return OK


def learning_stores_line(stores: Mapping[tuple[str, str | None], object]) -> str:
    """Each kind, with the backends that register their own implementation of it."""
    own: dict[str, list[str]] = {kind: [] for kind, _ in stores}
    for kind, backend in stores:
        if backend is not None:
            own[kind].append(backend)
    return ", ".join(
        f"{kind} (own: {', '.join(sorted(own[kind]))})" if own[kind] else kind
        for kind in sorted(own)
    )


def _version(_: argparse.Namespace) -> int:
    print(__version__)
    return OK


def build_parser() -> argparse.ArgumentParser:
    import importlib

    from kern import demo

    parser = argparse.ArgumentParser(
        prog="kern",
        description="kern: memory for AI agents. Look into, act on and move what agents remember.",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        default=bool(os.environ.get("KERN_DEBUG")),
        help="show the full traceback of an error (also: KERN_DEBUG=1)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo_parser = commands.add_parser("demo", help="two turns, two processes, one SQLite file")
    demo.build_parser(demo_parser)
    demo_parser.set_defaults(
        handler=lambda args: demo.run_turn(args) if args.turn else demo.main(args)
    )
    commands.add_parser(
        "plugins", help="list installed backends, model providers, learning stores"
    ).set_defaults(handler=_plugins)
    commands.add_parser("version", help="print kern's version").set_defaults(handler=_version)
    for name in COMMAND_MODULES:
        importlib.import_module(f"kern.cli.{name}").register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    import sys

    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    # --debug is accepted anywhere on the line, not only before the command.
    debug = "--debug" in argv
    args = parser.parse_args([arg for arg in argv if arg != "--debug"])
    args.debug = args.debug or debug
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return OK
    if args.debug:
        return int(handler(args))
    return _run_explained(handler, args)


def _run_explained(handler: object, args: argparse.Namespace) -> int:
    """Run ``handler``; print the errors a person can act on as one line, not a traceback."""
    from kern.errors import ConfigurationError, InvalidIdError, InvalidTextError, KernError

    try:
        return int(handler(args))  # type: ignore[operator]
    except CommandError as exc:
        err.print(f"kern {args.command}: {exc}", markup=False, soft_wrap=True)
        return exc.code
    except (ConfigurationError, InvalidIdError, InvalidTextError) as exc:
        err.print(f"kern {args.command}: {exc}", markup=False, soft_wrap=True)
        return BAD_INPUT
    except KernError as exc:
        err.print(f"kern {args.command}: {exc}", markup=False, soft_wrap=True)
        if isinstance(exc, ValueError):  # the input was wrong (a file, an id, a value)
            return BAD_INPUT
        err.print("(run with --debug for the traceback)", style="dim")
        return FAILED
    except KeyboardInterrupt:
        err.print(f"kern {args.command}: interrupted", markup=False)
        return FAILED


if __name__ == "__main__":
    raise SystemExit(main())
