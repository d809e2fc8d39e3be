"""Errors kern raises. Each message names the problem and the fix."""

from __future__ import annotations

#: The distribution a user installs (``kern`` itself is another project's name on PyPI);
#: the extras keep the backend names: ``kern-memory[postgres]``.
DISTRIBUTION = "kern-memory"


def install_command(extra: str) -> str:
    """The pip command that installs the extra for one backend, for error messages."""
    return f"pip install '{DISTRIBUTION}[{extra}]'"


class KernError(Exception):
    """Base class for every error kern raises on purpose."""


class ConfigurationError(KernError):
    """kern was set up in a way that cannot work (bad URL, missing extra, wrong class)."""


class BackendNotInstalledError(ConfigurationError):
    """A URL scheme belongs to a backend whose extra is not installed."""


class SyncAsyncMismatchError(ConfigurationError):
    """A sync object was used where an async one is needed, or the reverse."""


class SessionNotFoundError(KernError, LookupError):
    """An operation named a session that is not stored."""


class VersionConflictError(KernError):
    """A compare-and-set write found a newer version than the one it read.

    Another writer changed the session in between. Nothing was overwritten: read the
    session again, re-apply the change, and write with the new version.
    """

    def __init__(self, session_id: str, expected: int | None, actual: int | None) -> None:
        self.session_id = session_id
        self.expected = expected
        self.actual = actual
        if expected is None:
            what = f"session {session_id!r} already exists (version {actual})"
        elif actual is None:
            what = f"session {session_id!r} no longer exists (expected version {expected})"
        else:
            what = f"session {session_id!r} is at version {actual}, not {expected}"
        super().__init__(
            f"{what}: another writer changed it. Nothing was overwritten; re-read the "
            "session and write again with its current version."
        )


class RunNotFoundError(KernError, LookupError):
    """An operation named a run that is not stored."""


class RunFinishedError(KernError):
    """Only an unfinished (``running``) run may be updated: finished runs are immutable."""


class EncryptionKeyError(KernError):
    """Encrypted data could not be read or written: its key is not configured, or the key
    given under its id is not the one it was encrypted with (``kern.crypto``). ``key_id``
    names the key; nothing is returned in place of the text."""

    def __init__(self, message: str, *, key_id: str | None = None) -> None:
        super().__init__(message)
        self.key_id = key_id


class UnserializableError(KernError, TypeError):
    """A value (session state, metadata, tool result) cannot be stored as JSON."""


class InvalidIdError(KernError, ValueError):
    """An id given to the storage contract is not a usable id (see ``kern.ids``).

    Raised before any backend or driver sees the value, so nothing was read or written.
    """

    def __init__(self, argument: str, rule: str, value: object) -> None:
        self.argument = argument
        self.rule = rule
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        super().__init__(
            f"{argument} must be {rule}; got {type(value).__name__} {shown}. Ids are "
            "non-empty strings of at most 255 characters without NUL or lone surrogates "
            "(pass str(your_key)); nothing was read or written."
        )


class InvalidTextError(KernError, ValueError):
    """Text to be stored holds a character no backend can keep faithfully (NUL, lone
    surrogate). Refused on every backend alike, before anything is written."""


class StorageUnavailableError(KernError, ConnectionError):
    """The database could not be reached or dropped the connection mid-operation.

    The driver's exception is chained (``__cause__``). Whether a write that failed this way
    was stored is unknown: retry the same turn with the same ``run_id`` (see ``run_id``), which
    kern stores at most once.
    """

    def __init__(self, message: str, *, run_id: str | None = None) -> None:
        super().__init__(message)
        #: The run this error interrupted, when it came from a turn: pass it back as
        #: ``agent.run(..., run_id=...)`` to retry without storing the turn twice.
        self.run_id = run_id


class StorageLoginError(StorageUnavailableError):
    """The database server refused the credentials (wrong password, unknown user or role).

    ``user`` and ``host`` name the login that was refused; the password never appears.
    A ``StorageUnavailableError`` too, so code that catches that keeps working.
    """

    def __init__(self, message: str, *, user: str | None = None, host: str | None = None) -> None:
        super().__init__(message)
        self.user = user
        self.host = host


class SessionOwnershipError(KernError, PermissionError):
    """A session created for one user was used with another user's id.

    Sessions belong to the user they were created for. Use a session id of that user, or
    create the session shared (``Agent(shared_session=True)``) when several users take part.
    """


class ToolError(KernError):
    """A tool (or a workflow step function) raised: the run failed and nothing of it was
    stored. The tool's exception is chained; ``tool_name`` names the tool. A tool that wants
    the model to correct its call raises ``kern.tools.ToolRetry`` instead."""

    def __init__(self, message: str, *, tool_name: str) -> None:
        super().__init__(message)
        self.tool_name = tool_name


class ModelProviderError(KernError):
    """The model provider could not be reached or refused the request."""


class ForkError(KernError, ValueError):
    """``fork_session`` was refused: the fork point is past the session's last run, or the
    new session id is already taken. Nothing was written."""


class RetentionError(KernError, ValueError):
    """A retention policy or an ``apply_retention`` argument that cannot be used (a negative
    number of days, an unknown key in ``[retention]`` of kern.toml); nothing was deleted."""
