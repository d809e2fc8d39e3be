"""The DuckDB backend's own error: the file is held by another process for too long."""

from __future__ import annotations

from kern.errors import ConfigurationError


class DuckDbLockedError(ConfigurationError):
    """Another process kept the DuckDB file longer than ``lock_timeout`` allows.

    DuckDB lets one process at a time open a file for writing. kern processes share a file
    by taking turns (see ``kern.db.duckdb.lease``); this error means the holder did not give
    it up in time: a program that is not kern (the DuckDB CLI, a notebook), or a kern
    process inside one very long operation.
    """

    def __init__(self, db_file: str, lock_timeout: float, holder: str | None) -> None:
        self.db_file = db_file
        self.lock_timeout = lock_timeout
        self.holder = holder
        who = f"another process ({holder})" if holder else "another process"
        super().__init__(
            f"{who} holds the DuckDB file {db_file} and did not release it within "
            f"lock_timeout={lock_timeout:g}s. DuckDB allows one writing process per file: "
            "kern processes take turns on it, but a program that is not kern (the DuckDB "
            "CLI, a notebook, a script calling duckdb.connect) keeps it for as long as it "
            "stays connected. Close that program or its connection, give kern more time "
            "with DuckDb(..., lock_timeout=<seconds>), or use SqliteDb or PostgresDb when "
            "several processes write at once."
        )
