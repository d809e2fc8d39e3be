"""kern console: a local web app and HTTP API on a kern database (``kern serve``).

See what agents remember (sessions and their transcripts, a user's profile, memories and
learnings), approve or reject what they propose, and forget a user. It needs the
``console`` extra (``pip install 'kern-memory[console]'``): FastAPI, uvicorn and Jinja2 are
imported here only, never by ``import kern`` or the other commands. docs/console.md has
the tour; ``kern.console.auth`` says how requests are authenticated.
"""

from kern.console.app import create_app

__all__ = ["create_app"]
