"""The Lua scripts: each is one atomic step on the keys of ONE hash slot.

A script gets the key it is routed by as ``KEYS[1]`` and builds the other keys of the same
slot from a base passed in ``ARGV[1]`` (``<prefix>{s:<session_id>}:``), so Redis Cluster
runs it on the node that owns that slot. Nothing here re-encodes JSON: see ``codec``.

Scripts are composed from the Lua functions below (``store_run``, ``cas_read``/``cas_write``,
``touch``...), each written once. Redis runs a script atomically but does not undo the writes
of a script that fails halfway, so a script that must write all or nothing (``COMMIT_TURN``)
does every read and check that can fail before its first write.
"""

from __future__ import annotations

from kern.db.redis.keys import SESSION_PARTS, STATUSES


def _lua_list(items: tuple[str, ...]) -> str:
    return "{" + ", ".join(f"'{item}'" for item in items) + "}"


# Refresh the TTL of every key of a session (its fixed parts and each user's run set).
_TOUCH = f"""
local PARTS = {_lua_list(SESSION_PARTS)}
local STATUSES = {_lua_list(STATUSES)}
local function touch(base, ttl)
  if ttl <= 0 then return end
  for _, part in ipairs(PARTS) do redis.call('EXPIRE', base .. part, ttl) end
  for _, u in ipairs(redis.call('SMEMBERS', base .. 'users')) do
    redis.call('EXPIRE', base .. 'ru:' .. u, ttl)
  end
end
local function unindex_run(base, rid)
  redis.call('ZREM', base .. 'r:all', rid)
  redis.call('ZREM', base .. 'r:top', rid)
  redis.call('ZREM', base .. 'r:ct', rid)
  for _, s in ipairs(STATUSES) do
    redis.call('ZREM', base .. 'r:st:' .. s, rid)
    redis.call('ZREM', base .. 'r:top:st:' .. s, rid)
  end
end
"""

# Helpers every script may use: split a '\n'-joined list; and, before a script's first
# write, stop it (nothing written) if a key it is about to write holds another type.
_HELPERS = """
local function lines(joined)
  local out = {}
  if joined then
    for item in string.gmatch(joined, '[^\\n]+') do out[#out + 1] = item end
  end
  return out
end
local function expect(kind, key)
  local found = redis.call('TYPE', key)['ok']
  if found ~= 'none' and found ~= kind then
    error(redis.error_reply('WRONGTYPE kern: ' .. key .. ' holds a ' .. found .. ', not a '
      .. kind .. ' (something else writes under kern\\'s key prefix); nothing was written'))
  end
end
"""

# A run in its session's slot: store it at a seq and index it by seq (all / top-level / per
# status) and by created_at (µs, ``r:ct``: what retention reads), note its user
# (``place_run``); ``store_run`` places it at the next seq. Move the
# session's updated_at to the run's time if later (``follow_run``: returns moved 0/1 and the
# session's index keys). ``lowers``: whether a run created at ``created_us`` is older than
# every run of the session, or retention just found the session empty (its ``ro`` mark):
# on a cluster the caller then lowers the session's score in ``{ro}`` again after the
# script (``kern.db.redis.retention``), which never happens on a plain turn.
# ``run_keys_ok`` checks, before any write, the keys they will write.
_RUN = """
local function place_run(base, rid, seq, json, top, status, user, created_us)
  redis.call('HSET', base .. 'runs', rid, json)
  redis.call('ZADD', base .. 'r:all', seq, rid)
  redis.call('ZADD', base .. 'r:ct', created_us, rid)
  redis.call('ZADD', base .. 'r:st:' .. status, seq, rid)
  if top == '1' then
    redis.call('ZADD', base .. 'r:top', seq, rid)
    redis.call('ZADD', base .. 'r:top:st:' .. status, seq, rid)
  end
  if user ~= '' then
    redis.call('SADD', base .. 'ru:' .. user, rid)
    redis.call('SADD', base .. 'users', user)
  end
end
local function store_run(base, rid, body, top, status, user, created_us)
  local seq = redis.call('INCR', base .. 'seq')
  place_run(base, rid, seq, '{"seq":' .. seq .. ',' .. body, top, status, user, created_us)
  return seq
end
local function run_keys_ok(base, top, status, user)
  local seq = redis.call('GET', base .. 'seq')
  if seq and not string.match(seq, '^%d+$') then expect('counter', base .. 'seq') end
  expect('hash', base .. 'runs')
  expect('zset', base .. 'r:all')
  expect('zset', base .. 'r:ct')
  expect('zset', base .. 'r:st:' .. status)
  if top == '1' then
    expect('zset', base .. 'r:top')
    expect('zset', base .. 'r:top:st:' .. status)
  end
  if user ~= '' then
    expect('set', base .. 'ru:' .. user)
    expect('set', base .. 'users')
  end
end
local function lowers(base, created_us)
  if redis.call('EXISTS', base .. 'ro') == 1 then return 1 end
  local first = redis.call('ZRANGE', base .. 'r:ct', 0, 0, 'WITHSCORES')[2]
  if first and tonumber(created_us) < tonumber(first) then return 1 end
  return 0
end
local function follow_run(base, created, created_us)
  local sess = base .. 'session'
  local info = redis.call('HMGET', sess, 'um', 'ix')
  if info[1] and tonumber(created_us) > tonumber(info[1]) then
    redis.call('HSET', sess, 'u', created, 'um', created_us)
    return 1, info[2]
  end
  return 0, info[2]
end
"""

# Append a run into its session's slot (see APPEND_RUN). Returns {seq, moved, index keys
# of the session ('\n'-joined) or false, lowers}; {0} if the run id is stored here already.
_APPEND = (
    _RUN
    + """
local function append(base, rid, body, top, status, user, created, created_us, token)
  local runs = base .. 'runs'
  if redis.call('HEXISTS', runs, rid) == 1 then
    if redis.call('GET', base .. 'tok:' .. rid) ~= token then return {0} end
    local stored = redis.call('HGET', runs, rid)
    return {tonumber(string.match(stored, '^{"seq":(%d+),')), 0, false}
  end
  local lower = lowers(base, created_us)
  local seq = store_run(base, rid, body, top, status, user, created_us)
  redis.call('SET', base .. 'tok:' .. rid, token, 'EX', 600)
  local moved, ix = follow_run(base, created, created_us)
  return {seq, moved, ix, lower}
end
"""
)

#: Append a run: refuse a stored run_id, take the next seq, store the run and index it by
#: seq (all / top-level / per status), note its user, move the session's updated_at.
#: ARGV: base, run_id, body, top ('1'/'0'), status, user (quoted, '' if none),
#: created (iso), created (µs), ttl, token. Returns {seq, moved, the session's index keys,
#: lowers (1: move the session down in ``{ro}`` again, see ``lowers``)};
#: {0} if the run_id is already stored in this session. The caller's token is kept for a
#: while (``tok:<run_id>``): a client that resends the call after a lost reply gets the
#: seq its first attempt took instead of a duplicate error.
APPEND_RUN = (
    _TOUCH
    + _HELPERS
    + _APPEND
    + """
local out = append(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8],
                   ARGV[10])
if out[1] ~= 0 then touch(ARGV[1], tonumber(ARGV[9])) end
return out
"""
)

#: APPEND_RUN for a single server, in one round trip: a script there may reach keys of any
#: slot, so it also takes the run id's claim (KEYS[2]), notes the session in the user's
#: ``rs`` set (KEYS[3], its registry KEYS[4]), moves the session in its indexes and lowers
#: its score in the index of sessions holding runs (``{ro}``) to the run's created_at if
#: older. Same ARGV, then the session id, then the ``{ro}`` index key. Returns as
#: APPEND_RUN; {-1} if another session holds the run.
APPEND_RUN_LOCAL = (
    _TOUCH
    + _HELPERS
    + _APPEND
    + """
local base, rid, ttl = ARGV[1], ARGV[2], tonumber(ARGV[9])
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= base and redis.call('HEXISTS', holder .. 'runs', rid) == 1 then
  return {-1}
end
expect('zset', ARGV[12])
if ttl > 0 then redis.call('SET', KEYS[2], base, 'EX', ttl)
else redis.call('SET', KEYS[2], base) end
if KEYS[3] then
  redis.call('SADD', KEYS[3], ARGV[11])
  redis.call('SADD', KEYS[4], KEYS[3])
end
local out = append(base, rid, ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[10])
if out[1] ~= 0 then
  redis.call('ZADD', ARGV[12], 'LT', ARGV[8], ARGV[11])
  touch(base, ttl)
  if out[2] == 1 and out[3] then
    for _, key in ipairs(lines(out[3])) do
      redis.call('ZADD', key, 'XX', 'GT', ARGV[8], ARGV[11])
    end
  end
end
return out
"""
)

#: The newest runs of one seq index, newest first. ARGV: base, index part, max score
#: ('+inf' or '(<before_seq>'), limit.
LAST_RUNS = """
local ids = redis.call('ZREVRANGEBYSCORE', ARGV[1] .. ARGV[2], ARGV[3], '-inf',
                       'LIMIT', 0, tonumber(ARGV[4]))
local out = {}
for i = 1, #ids, 500 do
  local chunk = {}
  for j = i, math.min(i + 499, #ids) do chunk[#chunk + 1] = ids[j] end
  local got = redis.call('HMGET', KEYS[1], unpack(chunk))
  for j = 1, #chunk do out[#out + 1] = got[j] end
end
return out
"""

#: Replace a run's JSON if it is still what the caller read (compare-and-set), moving it
#: between the per-status indexes. ARGV: base, run_id, expected, new, seq, top, old
#: status, new status, ttl. Returns 1 done, 0 no such run, -1 changed meanwhile.
UPDATE_RUN = (
    _TOUCH
    + """
local base, rid = ARGV[1], ARGV[2]
local cur = redis.call('HGET', KEYS[1], rid)
if not cur then return 0 end
if cur == ARGV[4] then return 1 end  -- a resent call whose first attempt was applied
if cur ~= ARGV[3] then return -1 end
redis.call('HSET', KEYS[1], rid, ARGV[4])
if ARGV[7] ~= ARGV[8] then
  redis.call('ZREM', base .. 'r:st:' .. ARGV[7], rid)
  redis.call('ZADD', base .. 'r:st:' .. ARGV[8], ARGV[5], rid)
  if ARGV[6] == '1' then
    redis.call('ZREM', base .. 'r:top:st:' .. ARGV[7], rid)
    redis.call('ZADD', base .. 'r:top:st:' .. ARGV[8], ARGV[5], rid)
  end
end
touch(base, tonumber(ARGV[9]))
return 1
"""
)

# Compare-and-set of a session hash on its version, in two halves so a script can do its
# other checks between them. A is the argument list of SESSION_CAS (a script passes its ARGV,
# COMMIT_TURN's starts the same way). ``cas_read`` returns the verdict ('ok', 'conflict', or
# 'resent': this writer's own write, already applied) and the fields read {v, c, o, cid, t,
# w, ix}; ``cas_write`` writes the session after an 'ok' and returns its created_at.
_CAS = """
local function cas_read(k, A)
  local cur = redis.call('HMGET', k, 'v', 'c', 'o', 'cid', 't', 'w', 'ix')
  if cur[6] == A[12] and cur[1] == A[3] then return 'resent', cur end
  if A[2] == '' then
    if cur[1] then return 'conflict', cur end
  elseif cur[1] ~= A[2] then
    return 'conflict', cur
  end
  return 'ok', cur
end
local function cas_write(k, cur, A)
  local created
  if A[2] == '' then
    created = A[4]
    redis.call('HSET', k, 'c', created)
  else
    created = cur[2]
  end
  redis.call('HSET', k, 'v', A[3], 'u', A[5], 'um', A[6], 't', A[9], 'rest', A[10],
             'w', A[12], 'ix', A[13])
  if A[7] ~= '' then redis.call('HSET', k, 'o', string.sub(A[7], 2))
  else redis.call('HDEL', k, 'o') end
  if A[8] ~= '' then redis.call('HSET', k, 'cid', string.sub(A[8], 2))
  else redis.call('HDEL', k, 'cid') end
  return created
end
"""

#: Compare-and-set of a session hash on its version. ARGV: base, expected ('' = create,
#: must not exist), new version, created, updated, updated µs, owner ('=' + user_id or
#: '' for none), component (same form), type, rest, ttl, token, the session's index keys
#: ('\n'-joined: an append moves the session in them).
#: Returns {1, created, old owner, old component, old type} or {0, stored version}. The
#: writer's token is kept in the hash (``w``): a resent call whose first attempt was applied
#: (the reply was lost) succeeds instead of reporting a conflict with itself.
SESSION_CAS = (
    _TOUCH
    + _CAS
    + """
local verdict, cur = cas_read(KEYS[1], ARGV)
if verdict == 'conflict' then return {0, cur[1]} end
if verdict == 'resent' then return {1, cur[2], cur[3], cur[4], cur[5]} end
local created = cas_write(KEYS[1], cur, ARGV)
touch(ARGV[1], tonumber(ARGV[11]))
return {1, created, cur[3], cur[4], cur[5]}
"""
)

# One turn in its session's slot: the session compare-and-set (``cas_read``/``cas_write``)
# and the run (``store_run``, ``follow_run``), composed. ``stored_turn`` answers a retry:
# {2, run JSON, version, created, updated, rest} if the run id is stored here (the turn was
# committed), {-1} if it is but the session row is not (the run came from append_run).
# ``commit_write`` does the writes (after every check) and returns {1, seq, created,
# updated, updated µs, old owner, old component, old type, lowers}.
_COMMIT = (
    _CAS
    + _RUN
    + """
local function stored_turn(base, rid)
  local run = redis.call('HGET', base .. 'runs', rid)
  if not run then return false end
  local s = redis.call('HMGET', base .. 'session', 'v', 'c', 'u', 'rest')
  if not s[1] then return {-1} end
  return {2, run, s[1], s[2], s[3], s[4]}
end
local function commit_write(A, cur)
  local base = A[1]
  local created = cas_write(base .. 'session', cur, A)
  local lower = lowers(base, A[20])
  local seq = store_run(base, A[14], A[15], A[16], A[17], A[18], A[20])
  local moved = follow_run(base, A[19], A[20])
  touch(base, tonumber(A[11]))
  local updated, updated_us = A[5], A[6]
  if moved == 1 then updated, updated_us = A[19], A[20] end
  return {1, seq, created, updated, updated_us, cur[3], cur[4], cur[5], lower}
end
"""
)

#: Commit a turn: append a run AND write its session compare-and-set, atomically, in the
#: session's slot (KEYS[1] is its hash). ARGV: those of SESSION_CAS (1-13), then the run's:
#: run_id, body, top ('1'/'0'), status, user (quoted, '' if none), created (iso), created
#: (µs) (14-20). Returns as ``stored_turn`` for a run id stored here (nothing written),
#: {0, stored version} on a version conflict (nothing written), else as ``commit_write``.
#: Every check (and every read that could fail on a key of another type) is done before
#: the first write, so the script stores all of the turn or nothing of it.
COMMIT_TURN = (
    _TOUCH
    + _HELPERS
    + _COMMIT
    + """
local base = ARGV[1]
local stored = stored_turn(base, ARGV[14])
if stored then return stored end
local verdict, cur = cas_read(KEYS[1], ARGV)
if verdict == 'conflict' then return {0, cur[1]} end
run_keys_ok(base, ARGV[16], ARGV[17], ARGV[18])
return commit_write(ARGV, cur)
"""
)

#: COMMIT_TURN for a single server, in one round trip: a script there may reach keys of any
#: slot, so it also takes the run id's claim (KEYS[2]), refusing ({-1}) a run id another
#: session holds, notes the session in the run's user's ``rs`` set and that set in the
#: user's registry, and moves the session in its indexes (joins the new ones at its
#: updated_at, leaves those of the version it replaced) registering the owner's.
#: ARGV: those of COMMIT_TURN, then session_id (21), the run's user's ``rs`` key and
#: registry key ('' if the run has no user) (22, 23), the session owner's registry key
#: ('' if none) (24), the owner-slot index keys to register ('\n'-joined) (25) and the
#: index of sessions holding runs (``{ro}``, lowered to the run's created_at if older) (26).
COMMIT_TURN_LOCAL = (
    _TOUCH
    + _HELPERS
    + _COMMIT
    + """
local base, rid, sid = ARGV[1], ARGV[14], ARGV[21]
local stored = stored_turn(base, rid)
if stored then return stored end
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= base and redis.call('HEXISTS', holder .. 'runs', rid) == 1 then
  return {-1}
end
local verdict, cur = cas_read(KEYS[1], ARGV)
if verdict == 'conflict' then return {0, cur[1]} end
run_keys_ok(base, ARGV[16], ARGV[17], ARGV[18])
local new, keep, stale = lines(ARGV[13]), {}, {}
for _, key in ipairs(new) do keep[key] = true; expect('zset', key) end
for _, key in ipairs(lines(cur[7] or '')) do
  if not keep[key] then stale[#stale + 1] = key; expect('zset', key) end
end
if ARGV[22] ~= '' then expect('set', ARGV[22]); expect('set', ARGV[23]) end
local registered = lines(ARGV[25])
if ARGV[24] ~= '' and #registered > 0 then expect('set', ARGV[24]) end
expect('zset', ARGV[26])
-- Every check passed: from here on nothing fails.
local out = commit_write(ARGV, cur)
redis.call('ZADD', ARGV[26], 'LT', ARGV[20], sid)
local ttl = tonumber(ARGV[11])
if ttl > 0 then redis.call('SET', KEYS[2], base, 'EX', ttl)
else redis.call('SET', KEYS[2], base) end
if ARGV[22] ~= '' then
  redis.call('SADD', ARGV[22], sid)
  redis.call('SADD', ARGV[23], ARGV[22])
end
if ARGV[24] ~= '' and #registered > 0 then redis.call('SADD', ARGV[24], unpack(registered)) end
for _, key in ipairs(new) do redis.call('ZADD', key, out[5], sid) end
for _, key in ipairs(stale) do redis.call('ZREM', key, sid) end
return out
"""
)

# Runs written as they were exported (``kern.db.redis.bulk``), built on ``place_run``. A run
# comes whole: run_id, seq, JSON, top ('1'/'0'), status, user (quoted, '' if none), created
# (µs).
# ``seq_of`` is the seq of a stored run's JSON. ``import_check`` refuses a run stored here at
# another seq ({-1, stored seq, base, run_id}: an import never moves a stored run) and a seq
# another run holds ({0, seq, holder, run_id}), checks once per shape the keys the run will
# be written to, and returns the stored JSON (or false). ``import_run`` replaces that stored
# version (same place, but its status, parent or user may differ: it leaves its indexes
# first) and notes each session's highest seq; ``lift_counters`` then raises each session's
# counter to it, so the next append continues after the imported runs.
_IMPORT = (
    _RUN
    + """
local function seq_of(stored)
  return string.match(stored, '^{"seq":(%d+),') or '0'
end
local checked = {}
local function import_check(base, rid, seq, top, status, user)
  local stored = redis.call('HGET', base .. 'runs', rid)
  if stored and seq_of(stored) ~= seq then return {-1, seq_of(stored), base, rid} end
  for _, held in ipairs(redis.call('ZRANGEBYSCORE', base .. 'r:all', seq, seq)) do
    if held ~= rid then return {0, seq, held, rid} end
  end
  checked[base] = checked[base] or {}
  local shape = top .. ':' .. status .. ':' .. user
  if not checked[base][shape] then
    run_keys_ok(base, top, status, user)
    checked[base][shape] = true
  end
  return false, stored
end
local highest = {}
local function import_run(base, rid, seq, json, top, status, user, old, created_us)
  if old and old ~= json then
    unindex_run(base, rid)
    for _, u in ipairs(redis.call('SMEMBERS', base .. 'users')) do
      redis.call('SREM', base .. 'ru:' .. u, rid)
    end
  end
  place_run(base, rid, seq, json, top, status, user, created_us)
  if not highest[base] or tonumber(seq) > tonumber(highest[base]) then highest[base] = seq end
end
local function lift_counters(ttl)
  for base, seq in pairs(highest) do
    if tonumber(seq) > tonumber(redis.call('GET', base .. 'seq') or '0') then
      redis.call('SET', base .. 'seq', seq)
    end
    touch(base, ttl)
  end
end
"""
)

#: Import runs of ONE session (its slot; KEYS[1] is its ``runs`` hash) as they were
#: exported: seq, JSON and indexes as given, the stored version of a run replaced, the
#: counter lifted. ARGV: base, ttl, count, then the 7 fields of each run (``_IMPORT``).
#: Every run is checked before the first write: a refusal (``import_check``) refuses the
#: whole group, nothing written. Returns {1}.
IMPORT_RUNS = (
    _TOUCH
    + _HELPERS
    + _IMPORT
    + """
local base, ttl, n, olds = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), {}
for i = 0, n - 1 do
  local a = 4 + 7 * i
  local refused, stored = import_check(base, ARGV[a], ARGV[a + 1], ARGV[a + 3], ARGV[a + 4],
                                       ARGV[a + 5])
  if refused then return refused end
  olds[a] = stored
end
for i = 0, n - 1 do
  local a = 4 + 7 * i
  import_run(base, ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5],
             olds[a], ARGV[a + 6])
end
lift_counters(ttl)
return {1}
"""
)

#: IMPORT_RUNS for a single server: a page of runs of any sessions in ONE script (a script
#: there may reach keys of any slot), with what lives in other slots: the run id's claim
#: (a run another session holds is refused, {-1, its seq there, that session's base,
#: run_id}; a leftover claim, its run gone, is taken over) and the run's user's ``rs`` set
#: and its registry, and each session's place in the index of sessions holding runs
#: (``{ro}``, lowered to its oldest imported run). ARGV: ttl; the ``{ro}`` key; the number
#: of users, then per user: quoted id, ``rs`` key, registry key; then per session:
#: session_id, base, number of runs, then per run the 7 fields of ``_IMPORT`` and the run
#: id's claim key. KEYS[1] is the first run's claim. Every
#: run of every session is checked before the first write; a refusal is ``import_check``'s
#: with the session_id added, nothing written. Returns {1}.
IMPORT_RUNS_LOCAL = (
    _TOUCH
    + _HELPERS
    + _IMPORT
    + """
local ttl, ro, users, sessions, noted, olds = tonumber(ARGV[1]), ARGV[2], {}, {}, {}, {}
expect('zset', ro)
local a = 4
for _ = 1, tonumber(ARGV[3]) do
  users[ARGV[a]] = {ARGV[a + 1], ARGV[a + 2]}
  expect('set', ARGV[a + 1])
  expect('set', ARGV[a + 2])
  a = a + 3
end
while a <= #ARGV do
  local session = {sid = ARGV[a], base = ARGV[a + 1], first = a + 3, n = tonumber(ARGV[a + 2])}
  sessions[#sessions + 1] = session
  a = session.first + 8 * session.n
  for r = session.first, a - 1, 8 do
    local refused, stored = import_check(session.base, ARGV[r], ARGV[r + 1], ARGV[r + 3],
                                         ARGV[r + 4], ARGV[r + 5])
    local holder = redis.call('GET', ARGV[r + 7])
    if not refused and holder and holder ~= session.base then
      local there = redis.call('HGET', holder .. 'runs', ARGV[r])
      if there then refused = {-1, seq_of(there), holder, ARGV[r]} end
    end
    if refused then
      refused[5] = session.sid
      return refused
    end
    olds[r] = stored
  end
end
-- Every check passed: from here on nothing fails.
for _, session in ipairs(sessions) do
  local base = session.base
  for r = session.first, session.first + 8 * session.n - 1, 8 do
    import_run(base, ARGV[r], ARGV[r + 1], ARGV[r + 2], ARGV[r + 3], ARGV[r + 4], ARGV[r + 5],
               olds[r], ARGV[r + 6])
    if not session.oldest or tonumber(ARGV[r + 6]) < tonumber(session.oldest) then
      session.oldest = ARGV[r + 6]
    end
    if ttl > 0 then redis.call('SET', ARGV[r + 7], base, 'EX', ttl)
    else redis.call('SET', ARGV[r + 7], base) end
    local user = users[ARGV[r + 5]]
    if user and noted[user] ~= session then
      redis.call('SADD', user[1], session.sid)
      redis.call('SADD', user[2], user[1])
      noted[user] = session
    end
  end
end
for _, session in ipairs(sessions) do
  if session.oldest then redis.call('ZADD', ro, 'LT', session.oldest, session.sid) end
end
lift_counters(ttl)
return {1}
"""
)

#: Write a session hash as it was exported (version, created_at and updated_at as given)
#: with ``cas_write``, and refresh the TTL of its keys. KEYS[1] is the hash; ARGV as
#: SESSION_CAS's, the expected version '' (so created_at is the one given). No writer's
#: token is kept (``w``: no call will be resent), so a second import writes the same hash.
#: Returns the owner, component and type it had before, each nil if none.
IMPORT_SESSION = (
    _TOUCH
    + _CAS
    + """
local old = redis.call('HMGET', KEYS[1], 'o', 'cid', 't')
cas_write(KEYS[1], old, ARGV)
redis.call('HDEL', KEYS[1], 'w')
touch(ARGV[1], tonumber(ARGV[11]))
return old
"""
)

#: Delete a session with all its runs (and their ``tok:<run_id>`` resend tokens). ARGV:
#: base, owner ('' = any, else '=' + user_id: delete only a session owned by that user),
#: and optionally an idle cutoff (µs; retention's ``idle_sessions``: delete only a stored
#: session last updated before it that holds no running run). Returns {existed, owner,
#: component, type, run ids, quoted user ids of its runs}; {-1} when the owner did not
#: match or the session is not idle.
DELETE_SESSION = (
    _TOUCH
    + """
local base = ARGV[1]
local info = redis.call('HMGET', base .. 'session', 'v', 'o', 'cid', 't', 'um')
if ARGV[2] ~= '' and info[2] ~= string.sub(ARGV[2], 2) then return {-1} end
if ARGV[3] and ARGV[3] ~= '' then
  if not info[1] or not info[5] or tonumber(info[5]) >= tonumber(ARGV[3]) then return {-1} end
  if redis.call('ZCARD', base .. 'r:st:running') > 0 then return {-1} end
end
local rids = redis.call('HKEYS', base .. 'runs')
local users = redis.call('SMEMBERS', base .. 'users')
for _, part in ipairs(PARTS) do redis.call('DEL', base .. part) end
for _, u in ipairs(users) do redis.call('DEL', base .. 'ru:' .. u) end
for _, rid in ipairs(rids) do redis.call('DEL', base .. 'tok:' .. rid) end
redis.call('DEL', base .. 'ro')
local existed = 0
if info[1] then existed = 1 end
return {existed, info[2], info[3], info[4], rids, users}
"""
)

#: Delete one user's runs from a session, with their ``tok:<run_id>`` resend tokens; a
#: session left with neither its row nor any run loses its counter too (no key of it is
#: left). ARGV: base, quoted user id. Returns {the run ids, runs left in the session}.
FORGET_RUNS = (
    _TOUCH
    + """
local base = ARGV[1]
local set = base .. 'ru:' .. ARGV[2]
local gone = {}
for _, rid in ipairs(redis.call('SMEMBERS', set)) do
  if redis.call('HDEL', base .. 'runs', rid) == 1 then
    gone[#gone + 1] = rid
    unindex_run(base, rid)
  end
  redis.call('DEL', base .. 'tok:' .. rid)
end
redis.call('DEL', set)
redis.call('SREM', base .. 'users', ARGV[2])
if redis.call('EXISTS', base .. 'runs', base .. 'session') == 0 then
  redis.call('DEL', base .. 'seq', base .. 'ro')
end
return {gone, redis.call('HLEN', base .. 'runs')}
"""
)

# Retention (``kern.db.redis.retention``). ``after_bytes`` compares two strings byte by
# byte (Lua's own ``<`` follows the server's locale; sorted sets order members by bytes).
# ``kept`` says why a run of this session must stay: it is running, it is the session's
# newest (``newest``), or its parent is running; a parent stored in another session is
# ``'elsewhere'`` (the caller looks it up and names the runs it may take, mode ``ids``).
# ``drop_run`` removes a run with every entry of it in the slot (its seq and created_at
# indexes, its user's set, its resend token).
_RETENTION = """
local function after_bytes(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x > y end
  end
  return #a > #b
end
local function kept(base, rid, newest, json)
  if redis.call('ZSCORE', base .. 'r:st:running', rid) then return 'running' end
  if rid == newest then return 'newest' end
  if redis.call('ZSCORE', base .. 'r:top', rid) then return false end
  local parent = cjson.decode(json)['parent_run_id']
  if type(parent) ~= 'string' then return false end
  if redis.call('ZSCORE', base .. 'r:st:running', parent) then return 'parent' end
  if redis.call('HEXISTS', base .. 'runs', parent) == 1 then return false end
  return 'elsewhere', parent
end
local function drop_run(base, rid, users)
  redis.call('HDEL', base .. 'runs', rid)
  unindex_run(base, rid)
  for _, u in ipairs(users) do redis.call('SREM', base .. 'ru:' .. u, rid) end
  redis.call('DEL', base .. 'tok:' .. rid)
end
"""

#: One session's part of a retention batch, atomic in its slot (KEYS[1]: its ``runs``).
#: ARGV: base, mode, dry ('1': count, write nothing), the ``{ro}`` key ('' on a cluster,
#: where the caller moves the session in it), session id, the session's score seen there,
#: then by mode:
#:
#: - ``before``: cutoff (µs), the run cursor (created µs and run id, '' '' from the start),
#:   budget: the runs of ``r:ct`` created before the cutoff, after the cursor, at most
#:   budget of them, go unless kept (running, the newest, a running parent).
#: - ``keep``: keep, seq cursor ('' from the start), budget: runs with seq <= highest -
#:   keep, after the cursor, at most budget of them, go unless kept (the newest always is).
#: - ``ids``: run ids whose parent (in another session) the caller found not running; each
#:   goes unless kept for a reason of this slot.
#:
#: Returns {examined, removed run ids, {run id, parent id} pairs of runs whose parent is
#: in another session (left for mode ``ids``), cursor part 1, cursor part 2, exhausted
#: (1: no candidate left after the cursor), the oldest created_at left (µs) or false}.
#: After ``before`` walks a session to its end (and not dry), the oldest created_at left
#: is the session's new score in ``{ro}``: with a ``{ro}`` key (a single server) the
#: script moves it there itself, if its score is still the one seen (else a writer
#: lowered it meanwhile and it stays).
RETENTION_RUNS = (
    _TOUCH
    + _RETENTION
    + """
local base, mode, dry = ARGV[1], ARGV[2], ARGV[3] == '1'
local newest = redis.call('ZREVRANGE', base .. 'r:all', 0, 0)[1]
local ids, cur1, cur2, exhausted = {}, false, false, 1
if mode == 'before' then
  local cutoff, at, rid, budget = ARGV[7], ARGV[8], ARGV[9], tonumber(ARGV[10])
  local found = {}
  if at ~= '' then
    for _, m in ipairs(redis.call('ZRANGEBYSCORE', base .. 'r:ct', at, at)) do
      if after_bytes(m, rid) and tonumber(at) < tonumber(cutoff) then
        found[#found + 1] = {m, at}
      end
    end
  end
  local low = '-inf'
  if at ~= '' then low = '(' .. at end
  local more = redis.call('ZRANGEBYSCORE', base .. 'r:ct', low, '(' .. cutoff, 'WITHSCORES',
                          'LIMIT', 0, budget + 1)
  for i = 1, #more, 2 do found[#found + 1] = {more[i], more[i + 1]} end
  if #found > budget then exhausted = 0 end
  for i = 1, math.min(#found, budget) do
    ids[#ids + 1] = found[i][1]
    cur1, cur2 = found[i][2], found[i][1]
  end
elseif mode == 'keep' then
  local keep, at, budget = tonumber(ARGV[7]), ARGV[8], tonumber(ARGV[9])
  local top = redis.call('ZREVRANGE', base .. 'r:all', 0, 0, 'WITHSCORES')
  if top[2] then
    local bound = tonumber(top[2]) - keep
    local low = '-inf'
    if at ~= '' then low = '(' .. at end
    local found = redis.call('ZRANGEBYSCORE', base .. 'r:all', low, bound, 'WITHSCORES',
                             'LIMIT', 0, budget + 1)
    if #found > 2 * budget then exhausted = 0 end
    for i = 1, math.min(#found, 2 * budget), 2 do
      ids[#ids + 1] = found[i]
      cur1 = found[i + 1]
    end
  end
else
  for i = 7, #ARGV do ids[#ids + 1] = ARGV[i] end
end
local users = redis.call('SMEMBERS', base .. 'users')
local removed, elsewhere = {}, {}
for _, rid in ipairs(ids) do
  local json = redis.call('HGET', base .. 'runs', rid)
  if json then
    local why, parent = kept(base, rid, newest, json)
    if why == 'elsewhere' and mode ~= 'ids' then
      elsewhere[#elsewhere + 1] = {rid, parent}
    elseif not why or why == 'elsewhere' then
      removed[#removed + 1] = rid
      if not dry then drop_run(base, rid, users) end
    end
  end
end
if not dry and #removed > 0 then
  for _, u in ipairs(users) do
    if redis.call('EXISTS', base .. 'ru:' .. u) == 0 then redis.call('SREM', base .. 'users', u) end
  end
end
local oldest = false
if mode == 'before' and exhausted == 1 and not dry then
  oldest = redis.call('ZRANGE', base .. 'r:ct', 0, 0, 'WITHSCORES')[2] or false
  if ARGV[4] == '' and not oldest then
    -- On a cluster the caller drops the session from {ro}: an append racing with that
    -- sees this mark and puts it back (``lowers``).
    redis.call('SET', base .. 'ro', '1', 'EX', 600)
  end
  if ARGV[4] ~= '' then
    local score = redis.call('ZSCORE', ARGV[4], ARGV[5])
    if score and tonumber(score) == tonumber(ARGV[6]) then
      if oldest then redis.call('ZADD', ARGV[4], oldest, ARGV[5])
      else redis.call('ZREM', ARGV[4], ARGV[5]) end
    end
  end
end
return {#ids, removed, elsewhere, cur1, cur2, exhausted, oldest}
"""
)

#: Move a session in the index of sessions holding runs (KEYS[1], ``{ro}``) after
#: retention walked it, if its score is still the one seen (a writer that lowered it
#: meanwhile wins). ARGV: session id, score seen, new score ('' : it holds no run; leave).
#: Returns 1 if moved.
SETTLE_RUN_SESSION = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) ~= tonumber(ARGV[2]) then return 0 end
if ARGV[3] == '' then redis.call('ZREM', KEYS[1], ARGV[1])
else redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1]) end
return 1
"""

# A memory/learning document and its vector, KEYS: the record, its vector hash (same
# slot). ``read_doc`` returns the stored JSON and vector's model (each nil when absent): a
# read that can fail (a key of another type) comes before the first write. ``write_doc``
# stores the JSON and the vector (model and float32 bytes), or no vector (one stored before
# described the old text).
_DOC = """
local function read_doc()
  return redis.call('GET', KEYS[1]), redis.call('HGET', KEYS[2], 'model')
end
local function write_doc(json, model, vector, old_model)
  redis.call('SET', KEYS[1], json)
  if model then
    redis.call('HSET', KEYS[2], 'model', model, 'vector', vector)
  elseif old_model then
    redis.call('DEL', KEYS[2])
  end
end
"""

#: Store a memory/learning document and its vector, keeping the created_at already stored.
#: KEYS: the record, its vector hash. ARGV: created (iso), the JSON after
#: '{"created_at":"…",', then the vector's model and float32 bytes, or nothing (no vector).
#: Returns {created, old JSON or nil, old vector's model or nil}.
PUT_DOC = (
    _DOC
    + """
local old, old_model = read_doc()
local created = ARGV[1]
if old then
  local stored = string.match(old, '^{"created_at":"([^"]*)"')
  if stored then created = stored end
end
write_doc('{"created_at":"' .. created .. '",' .. ARGV[2], ARGV[3], ARGV[4], old_model)
return {created, old or false, old_model or false}
"""
)

#: Store a document exactly as given (an import keeps its created_at too) with its vector.
#: KEYS: the record, its vector hash. ARGV: the JSON, then the vector's model and float32
#: bytes, or nothing (no vector). Returns {old JSON or nil, old vector's model or nil}.
IMPORT_DOC = (
    _DOC
    + """
local old, old_model = read_doc()
write_doc(ARGV[1], ARGV[2], ARGV[3], old_model)
return {old or false, old_model or false}
"""
)

#: Delete a document and its vector. KEYS: the record, its vector hash. Returns {old JSON,
#: old vector's model}, each nil when absent.
DELETE_DOC = """
local old = redis.call('GET', KEYS[1])
local model = redis.call('HGET', KEYS[2], 'model')
redis.call('DEL', KEYS[1], KEYS[2])
return {old or false, model or false}
"""

#: Delete a document and its vector only if the record still holds ARGV[1] (nobody rewrote
#: it since it was read). KEYS: the record, its vector hash. Returns {1, old vector's model
#: or nil} if deleted, else {0}.
DELETE_DOC_IF_EQUAL = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return {0} end
local model = redis.call('HGET', KEYS[2], 'model')
redis.call('DEL', KEYS[1], KEYS[2])
return {1, model or false}
"""

#: Set the vector of a stored document, leaving the record as it is. KEYS: the record, its
#: vector hash. ARGV: model, float32 bytes. Returns {1, old vector's model or nil, the
#: record's JSON}, or {0} when no record is stored (nothing written).
SET_VECTOR = """
local doc = redis.call('GET', KEYS[1])
if not doc then return {0} end
local old = redis.call('HGET', KEYS[2], 'model')
redis.call('HSET', KEYS[2], 'model', ARGV[1], 'vector', ARGV[2])
return {1, old or false, doc}
"""

#: Drop an index entry only if its score is still the one the reader saw: a writer that
#: re-added it since (with a new score) keeps it.
ZREM_IF_SCORE = """
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if s and tonumber(s) == tonumber(ARGV[2]) then return redis.call('ZREM', KEYS[1], ARGV[1]) end
return 0
"""

#: Point a claim at another session if it still names the one the caller saw.
#: ARGV: seen, new, ttl (0: none).
MOVE_CLAIM = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if tonumber(ARGV[3]) > 0 then redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
else redis.call('SET', KEYS[1], ARGV[2]) end
return 1
"""

#: Delete every key a user's registry names, and the registry (one slot).
PURGE_REGISTRY = """
local n = 0
for _, k in ipairs(redis.call('SMEMBERS', KEYS[1])) do n = n + redis.call('DEL', k) end
redis.call('DEL', KEYS[1])
return n
"""

SCRIPTS: dict[str, str] = {
    "append_run": APPEND_RUN,
    "append_run_local": APPEND_RUN_LOCAL,
    "last_runs": LAST_RUNS,
    "update_run": UPDATE_RUN,
    "session_cas": SESSION_CAS,
    "commit_turn": COMMIT_TURN,
    "commit_turn_local": COMMIT_TURN_LOCAL,
    "delete_session": DELETE_SESSION,
    "forget_runs": FORGET_RUNS,
    "import_runs": IMPORT_RUNS,
    "import_runs_local": IMPORT_RUNS_LOCAL,
    "import_session": IMPORT_SESSION,
    "put_doc": PUT_DOC,
    "import_doc": IMPORT_DOC,
    "delete_doc": DELETE_DOC,
    "delete_doc_if_equal": DELETE_DOC_IF_EQUAL,
    "set_vector": SET_VECTOR,
    "zrem_if_score": ZREM_IF_SCORE,
    "move_claim": MOVE_CLAIM,
    "purge_registry": PURGE_REGISTRY,
    "retention_runs": RETENTION_RUNS,
    "settle_run_session": SETTLE_RUN_SESSION,
}
