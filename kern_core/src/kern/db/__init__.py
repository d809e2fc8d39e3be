"""Storage backends. ``connect()`` picks one by URL scheme through the plugin registry.

kern-core owns this file; it extends ``__path__`` so that each plugin distribution can add
its ``kern.db.<name>`` package (``kern.db.sqlite``, ``kern.db.postgres``, ...).
"""

from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)

from kern.db.base import AsyncBaseDb, BaseDb
from kern.db.registry import connect

__all__ = ["AsyncBaseDb", "BaseDb", "connect"]
