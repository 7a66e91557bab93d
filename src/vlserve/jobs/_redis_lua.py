"""The Lua scripts of ``RedisJobStore``: every state change of a job is one script.

Redis runs a script without interleaving any other command, so each check-then-write below is
atomic across all replicas sharing the server. Times come from the server's clock (``TIME``), so
replicas with skewed clocks still agree on when a lease expires. Keys (``P`` is the prefix)::

    P seq                       string  global sequence number (FIFO order)
    P lanes                     set     every lane ever used (for counts)
    P job:<id>                  hash    the job's fields (request/result/error as JSON)
    P queue:<lane>              zset    queued job ids; score = -priority * 2^42 + seq
    P running                   zset    running job ids; score = lease expiry (server time)
    P owner:all:<owner>         zset    the owner's job ids; score = seq
    P owner:<status>:<owner>    zset    the same, one per status (for filtered listing)
    P counts:<lane>             hash    status -> number of jobs (for metrics)
    P finished                  zset    finished job ids; score = when they finished (for purging)
    P bytes                     hash    owner -> bytes of its stored jobs' JSON (for the quota)

A job's hash also holds ``task`` and ``size`` (its request, result and error JSON in bytes), so
that listings read a few small fields (HMGET) and never the bodies.

The scripts reach keys they compute (``P job:<id>``), which a single Redis server or a primary
with replicas allows; Redis Cluster would need all of them in one hash slot.

Scripts never fail half-way on valid input (the Python side validates before calling), which
is what makes a batch submit all-or-none.
"""

from __future__ import annotations

__all__ = ["CANCEL", "CLAIM", "COMPLETE", "HEARTBEAT", "PURGE", "REQUEUE", "SEQ_SPAN", "SUBMIT"]

#: Sequence numbers stay below this; with |priority| <= 1000 every score is an exact double.
SEQ_SPAN = 2**42

_PRELUDE = """
if redis.replicate_commands then redis.replicate_commands() end
local P = ARGV[1]
local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local function ftime(x) return string.format('%.6f', x) end
local function fint(x) return string.format('%.0f', x) end
-- Move a job from one status to another in the owner's status index and the lane counts.
local function move(id, owner, lane, seq, from, to)
  if from then
    redis.call('ZREM', P .. 'owner:' .. from .. ':' .. owner, id)
    redis.call('HINCRBY', P .. 'counts:' .. lane, from, -1)
  end
  redis.call('ZADD', P .. 'owner:' .. to .. ':' .. owner, seq, id)
  redis.call('HINCRBY', P .. 'counts:' .. lane, to, 1)
  if to == 'succeeded' or to == 'failed' or to == 'cancelled' then
    redis.call('ZADD', P .. 'finished', now(), id)
  end
end
-- Count n more bytes stored for a job and its owner.
local function grow(key, owner, n)
  redis.call('HINCRBY', key, 'size', n)
  redis.call('HINCRBY', P .. 'bytes', owner, n)
end
"""

# ARGV: P, owner, lane, priority, batch_id ('' = none), n, then n triples of (id, request JSON, task).
SUBMIT = (
    _PRELUDE
    + f"""
local owner, lane, prio, batch, n = ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6])
local t = ftime(now())
local first = redis.call('INCRBY', P .. 'seq', n) - n + 1
redis.call('SADD', P .. 'lanes', lane)
for i = 0, n - 1 do
  local id, body, task, seq = ARGV[7 + 3 * i], ARGV[8 + 3 * i], ARGV[9 + 3 * i], first + i
  local score = fint(-prio * {SEQ_SPAN} + seq)
  local key = P .. 'job:' .. id
  redis.call('HSET', key, 'id', id, 'owner', owner, 'lane', lane, 'priority', fint(prio),
    'status', 'queued', 'request', body, 'created_at', t, 'attempts', '0', 'progress', '0',
    'seq', fint(seq), 'score', score, 'cancel_requested', '0', 'task', task, 'size', '0')
  grow(key, owner, #body)
  if batch ~= '' then redis.call('HSET', key, 'batch_id', batch) end
  redis.call('ZADD', P .. 'queue:' .. lane, score, id)
  redis.call('ZADD', P .. 'owner:all:' .. owner, seq, id)
  move(id, owner, lane, seq, nil, 'queued')
end
return t
"""
)

# ARGV: P, worker_id, lease_seconds, lane... -> the claimed job's HGETALL, or nil.
CLAIM = (
    _PRELUDE
    + """
while true do
  local best, best_score, best_lane
  for i = 4, #ARGV do
    local top = redis.call('ZRANGE', P .. 'queue:' .. ARGV[i], 0, 0, 'WITHSCORES')
    if top[1] then
      local score = tonumber(top[2])
      if not best_score or score < best_score then best, best_score, best_lane = top[1], score, ARGV[i] end
    end
  end
  if not best then return false end
  redis.call('ZREM', P .. 'queue:' .. best_lane, best)
  local key = P .. 'job:' .. best
  local f = redis.call('HMGET', key, 'status', 'owner', 'seq')
  -- A queue entry whose job is not queued (damaged by hand) is dropped, not run.
  if f[1] == 'queued' then
    local t = now()
    local expires = ftime(t + tonumber(ARGV[3]))
    redis.call('HSET', key, 'status', 'running', 'worker_id', ARGV[2], 'lease_expires_at', expires,
      'started_at', ftime(t), 'progress', '0')
    redis.call('HINCRBY', key, 'attempts', 1)
    redis.call('ZADD', P .. 'running', expires, best)
    move(best, f[2], best_lane, f[3], 'queued', 'running')
    return redis.call('HGETALL', key)
  end
end
"""
)

_IS_HOLDER = """
local function is_holder(f, worker, attempt)
  return f[1] == 'running' and f[2] == worker and (attempt == '' or f[3] == attempt)
end
"""

# ARGV: P, id, worker_id, lease_seconds, progress ('' = unchanged), attempt ('' = any) -> 1 or 0.
HEARTBEAT = (
    _PRELUDE
    + _IS_HOLDER
    + """
local id = ARGV[2]
local key = P .. 'job:' .. id
local f = redis.call('HMGET', key, 'status', 'worker_id', 'attempts', 'cancel_requested')
if not is_holder(f, ARGV[3], ARGV[6]) or f[4] == '1' then return 0 end
local expires = ftime(now() + tonumber(ARGV[4]))
redis.call('HSET', key, 'lease_expires_at', expires)
if ARGV[5] ~= '' then redis.call('HSET', key, 'progress', ARGV[5]) end
redis.call('ZADD', P .. 'running', expires, id)
return 1
"""
)

# ARGV: P, id, worker_id, attempt ('' = any), status, field ('result' | 'error' | ''), JSON -> 1 or 0.
COMPLETE = (
    _PRELUDE
    + _IS_HOLDER
    + """
local id, status, field = ARGV[2], ARGV[5], ARGV[6]
local key = P .. 'job:' .. id
local f = redis.call('HMGET', key, 'status', 'worker_id', 'attempts', 'owner', 'lane', 'seq')
if not is_holder(f, ARGV[3], ARGV[4]) then return 0 end
redis.call('HSET', key, 'status', status, 'finished_at', ftime(now()))
if field ~= '' then
  redis.call('HSET', key, field, ARGV[7])
  grow(key, f[4], #ARGV[7])
end
if status == 'succeeded' then redis.call('HSET', key, 'progress', '1') end
redis.call('HDEL', key, 'lease_expires_at')
redis.call('ZREM', P .. 'running', id)
move(id, f[4], f[5], f[6], 'running', status)
return 1
"""
)

# ARGV: P, id, owner -> {'missing'} | {'finished', status} | {'ok', HGETALL}.
CANCEL = (
    _PRELUDE
    + """
local id, owner = ARGV[2], ARGV[3]
local key = P .. 'job:' .. id
local f = redis.call('HMGET', key, 'status', 'owner', 'lane', 'seq')
if not f[1] or f[2] ~= owner then return {'missing'} end
if f[1] == 'queued' then
  redis.call('ZREM', P .. 'queue:' .. f[3], id)
  redis.call('HSET', key, 'status', 'cancelled', 'finished_at', ftime(now()), 'cancel_requested', '1')
  move(id, owner, f[3], f[4], 'queued', 'cancelled')
elseif f[1] == 'running' then
  redis.call('HSET', key, 'cancel_requested', '1')
else
  return {'finished', f[1]}
end
return {'ok', redis.call('HGETALL', key)}
"""
)

# ARGV: P, max_attempts, error JSON for "worker died repeatedly", batch size
#   -> {jobs taken back, leases looked at}.
REQUEUE = (
    _PRELUDE
    + """
local max_attempts, died, batch = tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local t = now()
local ids = redis.call('ZRANGEBYSCORE', P .. 'running', '-inf', '(' .. ftime(t), 'LIMIT', 0, batch)
local n = 0
for _, id in ipairs(ids) do
  redis.call('ZREM', P .. 'running', id)
  local key = P .. 'job:' .. id
  local f = redis.call('HMGET', key, 'status', 'attempts', 'cancel_requested', 'owner', 'lane', 'seq',
    'score')
  if f[1] == 'running' then
    local to
    if f[3] == '1' then
      to = 'cancelled'
      redis.call('HSET', key, 'status', to, 'finished_at', ftime(t))
    elseif tonumber(f[2]) >= max_attempts then
      to = 'failed'
      redis.call('HSET', key, 'status', to, 'finished_at', ftime(t), 'error', died)
      grow(key, f[4], #died)
    else
      to = 'queued'
      redis.call('HSET', key, 'status', to, 'progress', '0')
      redis.call('ZADD', P .. 'queue:' .. f[5], f[7], id)
    end
    redis.call('HDEL', key, 'worker_id', 'lease_expires_at')
    move(id, f[4], f[5], f[6], 'running', to)
    n = n + 1
  end
end
return {n, #ids}
"""
)

# ARGV: P, max_age (seconds; 0 = no age limit), keep (finished jobs kept; 0 = no count limit),
#   batch size -> jobs deleted (call again while it equals the batch size).
PURGE = (
    _PRELUDE
    + """
local max_age, keep, batch = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local ids = {}
if max_age > 0 then
  ids = redis.call('ZRANGEBYSCORE', P .. 'finished', '-inf', '(' .. ftime(now() - max_age), 'LIMIT', 0, batch)
end
if #ids == 0 and keep > 0 then
  local excess = redis.call('ZCARD', P .. 'finished') - keep
  if excess > 0 then ids = redis.call('ZRANGE', P .. 'finished', 0, math.min(excess, batch) - 1) end
end
for _, id in ipairs(ids) do
  local key = P .. 'job:' .. id
  local f = redis.call('HMGET', key, 'owner', 'lane', 'status', 'size')
  redis.call('ZREM', P .. 'finished', id)
  if f[1] then
    redis.call('DEL', key)
    redis.call('ZREM', P .. 'owner:all:' .. f[1], id)
    redis.call('ZREM', P .. 'owner:' .. f[3] .. ':' .. f[1], id)
    redis.call('HINCRBY', P .. 'counts:' .. f[2], f[3], -1)
    if f[4] then redis.call('HINCRBY', P .. 'bytes', f[1], -tonumber(f[4])) end
  end
end
return #ids
"""
)
