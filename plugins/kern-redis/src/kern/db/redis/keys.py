"""Key names: one place that decides which keys share a Redis Cluster hash slot.

Every key carries a hash tag (the text between its first ``{`` and the next ``}``), and the
tag says which family of data the key belongs to:

- ``{s:<session_id>}``: a session's hash, its run counter, its runs and their seq indexes.
  Everything ``append_run`` / ``get_last_runs`` / ``upsert_session`` touch atomically.
- ``{u:<user_id>}``: a user's indexes (sessions, memories, learnings, search tokens) and the
  registry of those keys, so ``forget_user`` can drop them in one slot.
- ``{r:<run_id>}``, ``{m:<memory_id>}``, ``{l:<learning_id>}``: one record (or, for runs,
  the run id's claim naming its session). A memory's or learning's vector is the hash
  ``<record key>:vec`` (``model``, ``vector``: float32 little-endian bytes), in the record's
  slot, so the script that writes the record writes (or drops) its vector too.
- ``{c:…}``, ``{t:…}``, ``{sa}``: session indexes by component, type, and of all sessions;
  ``{ro}``: the sessions holding runs, scored by (a lower bound of) their oldest run's
  created_at, which retention reads (``kern.db.redis.retention``);
  ``{lk:…}``, ``{ln:…}``, ``{le:…}``, ``{ls:…}``, ``{la}``: learning indexes by kind,
  namespace, entity, session, and of all learnings.
- ``{ma}``: the vector state sets of all memories (``{la}`` and ``{lk:…}`` hold those of
  learnings, all and per kind): ``nv`` (rows without a vector), ``v:<model>`` (rows whose
  vector that model made) and ``vm`` (the models seen), so "rows without a vector by this
  model" is read from sets, not by walking every row.

Values are percent-quoted inside keys, so no id can forge another key or break the tag.
"""

from __future__ import annotations

import re
from functools import lru_cache
from urllib.parse import quote, unquote

from kern.errors import ConfigurationError
from kern.records import RunStatus

DEFAULT_PREFIX = "kern:"

#: Run statuses, in a fixed order (the Lua scripts get the same list).
STATUSES: tuple[str, ...] = tuple(status.value for status in RunStatus)

#: The fixed parts of a session's slot, after its base (``<prefix>{s:<id>}:``).
SESSION_PARTS: tuple[str, ...] = (
    "session",
    "seq",
    "runs",
    "users",
    "r:all",
    "r:top",
    "r:ct",
    *(f"r:st:{s}" for s in STATUSES),
    *(f"r:top:st:{s}" for s in STATUSES),
)


@lru_cache(maxsize=65536)
def q(value: str) -> str:
    """``value`` safe inside a key: no ``{``, ``}``, ``:`` or ``%`` left unquoted."""
    return quote(value, safe="")


def literal_glob(literal: str) -> str:
    """``literal`` matched as itself in a ``SCAN MATCH`` pattern."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", literal)


def check_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or any(ch in prefix for ch in "{}\n"):
        raise ConfigurationError(
            f"key_prefix must be a string without '{{', '}}' or newlines (braces would "
            f"change the hash slot of kern's keys on Redis Cluster), got {prefix!r}; e.g. "
            "key_prefix='app:'."
        )
    return prefix


def vector_state(base: str, model: str | None) -> str:
    """The set of rows under ``base`` (``{ma}:``, ``{la}:``, ``{lk:<kind>}:``) whose vector
    ``model`` made (``None``: rows without a vector)."""
    return base + ("nv" if model is None else f"v:{q(model)}")


def vector_models(base: str) -> str:
    """The set of models with a ``vector_state`` set under ``base``."""
    return base + "vm"


def run_index(top_level_only: bool, status: str | None) -> str:
    """The session-slot part holding the seqs of runs that pass these filters."""
    top = "r:top" if top_level_only else "r"
    if status is None:
        return top if top_level_only else "r:all"
    return f"{top}:st:{status}"


class Keys:
    """Key names under one prefix (``kern:`` by default)."""

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        self.prefix = check_prefix(prefix)
        p = self.prefix
        self.schema = f"{p}{{meta}}:schema"
        self.all_sessions = f"{p}{{sa}}:sess"
        #: Sessions holding runs (member session_id, score a lower bound of the created_at
        #: of its oldest run, in µs): ``append_run``, ``commit_turn`` and imports lower it
        #: (``ZADD LT``), retention raises it after removing old runs.
        self.run_sessions = f"{p}{{ro}}:sess"
        self.all_learnings = f"{p}{{la}}:"
        self.all_memories = f"{p}{{ma}}:"

    # -- key families, for the scans that must find every row of a kind -------------------
    def family(self, tag: str, suffix: str = "") -> str:
        """The ``SCAN MATCH`` pattern of every ``<prefix>{<tag>:<id>}<suffix>`` key."""
        return f"{literal_glob(self.prefix)}{{{tag}:*}}{suffix}"

    def id_in(self, name: str, tag: str) -> str:
        """The id in the hash tag of ``name``, a key of ``family(tag, …)``."""
        start = len(self.prefix) + len(tag) + 2
        return unquote(name[start : name.index("}", start)])

    # -- a session's slot -----------------------------------------------------------------
    def session_base(self, session_id: str) -> str:
        return f"{self.prefix}{{s:{q(session_id)}}}:"

    def claim(self, run_id: str) -> str:
        """The run id's claim: its value is the key base of the session holding the run."""
        return f"{self.prefix}{{r:{q(run_id)}}}"

    # -- a user's slot ----------------------------------------------------------------------
    def user_base(self, user_id: str) -> str:
        return self.user_base_quoted(q(user_id))

    def user_base_quoted(self, quoted_user_id: str) -> str:
        """The user's slot base from an id already quoted (as session scripts store it)."""
        return f"{self.prefix}{{u:{quoted_user_id}}}:"

    def user_registry(self, user_id: str) -> str:
        """A set naming every other key of the user's slot (``forget_user`` drops them)."""
        return self.user_base(user_id) + "keys"

    def user_run_sessions(self, user_id: str) -> str:
        """Sessions holding runs of the user (their own or anyone's)."""
        return self.user_base(user_id) + "rs"

    # -- session indexes (sorted sets: member session_id, score updated_at in µs) ----------
    def session_index(
        self, user_id: str | None, component_id: str | None, stype: str | None
    ) -> str:
        """The index answering exactly this combination of ``list_sessions`` filters."""
        t = f":t:{q(stype)}" if stype is not None else ""
        if user_id is not None:
            c = f":c:{q(component_id)}" if component_id is not None else ""
            return f"{self.user_base(user_id)}sess{c}{t}"
        if component_id is not None:
            return f"{self.prefix}{{c:{q(component_id)}}}:sess{t}"
        if stype is not None:
            return f"{self.prefix}{{t:{q(stype)}}}:sess"
        return self.all_sessions

    def session_entries(
        self, user_id: str | None, component_id: str | None, stype: str | None
    ) -> list[str]:
        """Every index a session with these fields belongs to (one per filter combination)."""
        users = (user_id, None) if user_id is not None else (None,)
        comps = (component_id, None) if component_id is not None else (None,)
        types = (stype, None) if stype is not None else (None,)
        return [self.session_index(u, c, t) for u in users for c in comps for t in types]

    # -- memories -----------------------------------------------------------------------------
    def memory(self, memory_id: str) -> str:
        return f"{self.prefix}{{m:{q(memory_id)}}}"

    def memory_index(self, user_id: str, agent_id: str | None = None) -> str:
        base = self.user_base(user_id)
        return f"{base}m" if agent_id is None else f"{base}m:a:{q(agent_id)}"

    def memory_token(self, user_id: str, token: str) -> str:
        return f"{self.user_base(user_id)}mt:{q(token)}"

    def memory_vector(self, memory_id: str) -> str:
        return self.memory(memory_id) + ":vec"

    # -- learnings ------------------------------------------------------------------------------
    def learning(self, learning_id: str) -> str:
        return f"{self.prefix}{{l:{q(learning_id)}}}"

    def learning_vector(self, learning_id: str) -> str:
        return self.learning(learning_id) + ":vec"

    def learning_base(self, field: str, value: str | None) -> str:
        """The slot base of the learning index by ``field`` (``None`` field: all learnings)."""
        if field == "all":
            return self.all_learnings
        if field == "user_id":
            assert value is not None
            return self.user_base(value) + "l:"
        tag = {"kind": "lk", "namespace": "ln", "session_id": "ls", "entity_id": "le"}[field]
        assert value is not None
        return f"{self.prefix}{{{tag}:{q(value)}}}:"

    def learning_index(self, field: str, value: str | None, status: str | None) -> str:
        base = self.learning_base(field, value)
        return f"{base}ix" if status is None else f"{base}ix:{q(status)}"

    def learning_token(self, field: str, value: str | None, token: str) -> str:
        return f"{self.learning_base(field, value)}t:{q(token)}"
