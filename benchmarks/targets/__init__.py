"""One module per backend: how the benchmark builds kern's Db, and the bare-driver floor.

A target module defines:

- ``NAME``: the backend's name in the results table;
- ``kern_db(folder) -> BaseDb``: a sync kern database (``folder`` is a scratch directory);
- ``Floor(folder)``: the same storage work done with the bare driver, with ``seed(session_id,
  prior, messages_for)``, ``last_messages(session_id, n) -> list[dict]``,
  ``append(session_id, user_text, messages, output)`` and ``close()``. It keeps the same
  indexes and durability settings as kern's backend, so the difference is kern's overhead.
"""
