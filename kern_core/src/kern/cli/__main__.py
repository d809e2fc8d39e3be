"""``python -m kern.cli``: the ``kern`` command."""

from kern.cli import main

raise SystemExit(main())
