"""kern: a memory for AI agents that survives restarts, kept in your own database.

kern-core owns this file. It extends ``__path__`` so that separately installed plugin
distributions can add their own ``kern.db.<name>`` packages to the same namespace.
"""

from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)

__version__ = "0.1.0"
