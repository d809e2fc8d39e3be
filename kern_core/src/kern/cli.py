"""The ``kern`` command: ``kern demo``, ``kern plugins``, ``kern version``."""

from __future__ import annotations

import argparse
from collections.abc import Mapping

from rich.console import Console
from rich.table import Table

from kern import __version__


def _plugins(_: argparse.Namespace) -> int:
    from kern.plugins import plugin_names, registry

    reg = registry()
    table = Table("backend", "schemes", "async schemes")
    for backend in reg.backends.values():
        table.add_row(backend.name, ", ".join(backend.schemes), ", ".join(backend.async_schemes))
    console = Console()
    console.print(table)
    console.print("model providers: " + ", ".join(sorted(reg.models)), markup=False)
    console.print("learning stores: " + learning_stores_line(reg.learning_stores), markup=False)
    console.print("plugins loaded: " + ", ".join(plugin_names()), markup=False)
    return 0


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


def main(argv: list[str] | None = None) -> int:
    from kern import demo

    parser = argparse.ArgumentParser(prog="kern", description="kern: memory for AI agents")
    commands = parser.add_subparsers(dest="command", required=True)
    demo.build_parser(commands.add_parser("demo", help="two turns, two processes, one SQLite file"))
    commands.add_parser("plugins", help="list installed backends, model providers, learning stores")
    commands.add_parser("version", help="print kern's version")
    args = parser.parse_args(argv)
    if args.command == "demo":
        return demo.run_turn(args) if args.turn else demo.main(args)
    if args.command == "plugins":
        return _plugins(args)
    print(__version__)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
