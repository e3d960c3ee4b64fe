-- Accept one danmaku: the checks, the room-wide sequence number, the history
-- and the publish, in one atomic step.  Because PUBLISH runs inside the
-- script, the channel carries danmaku in seq order to every node.
-- KEYS[1] room meta hash       KEYS[2] mutes zset (user -> until ms)
-- KEYS[3] user GCRA cell       KEYS[4] user slow-mode cell
-- KEYS[5] room GCRA cell       KEYS[6] seq counter
-- KEYS[7] history stream       KEYS[8] req_id dedup key (in the room's slot even without a req_id: a cluster refuses '')
-- KEYS[9] the room's per-minute danmaku series (HASH epoch minute -> count)
-- ARGV[1] user  ARGV[2] name  ARGV[3] text  ARGV[4] prio (0 viewer, 1 host)
-- ARGV[5] exempt from limits (1 for the room's host and admins)
-- ARGV[6] user rate/s  ARGV[7] user burst  ARGV[8] room rate/s  ARGV[9] room burst
-- ARGV[10] history length  ARGV[11] channel  ARGV[12] how long a req_id's answer is kept (s)
-- ARGV[13] '1' when the danmaku has a req_id (KEYS[8] is used), '0' when not
-- Ids come from KEYS[6] through _ids_lib.lua (they never repeat, even after Redis
-- loses its last second); the room meta records the instance as 'dm_rid'.
-- Returns {'ok', seq, ts_ms} or {reason, retry_after_ms}.  Nothing is written
-- unless every check passed; a retry with the same req_id returns the first answer.
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)

if ARGV[13] == '1' then
  local prev = redis.call('GET', KEYS[8])
  if prev then
    local seq, ts = string.match(prev, '(%d+):(%d+)')
    return {'ok', tonumber(seq), tonumber(ts)}
  end
end

if redis.call('HGET', KEYS[1], 'status') ~= 'live' then
  return {'room_not_live', 0}
end

local user_tat, room_tat
if ARGV[5] ~= '1' then
  local muted = redis.call('ZSCORE', KEYS[2], ARGV[1])
  if muted and tonumber(muted) > now then
    return {'muted', tonumber(muted) - now}
  end
  local slow = tonumber(redis.call('HGET', KEYS[1], 'slow_mode_s') or '0')
  if slow > 0 then
    local left = redis.call('PTTL', KEYS[4])
    if left > 0 then return {'slow_mode', left} end
  end
  -- the user's rate, then the room's (_gcra_lib.lua); neither is taken unless both allow
  local wait
  user_tat, wait = gcra_peek(KEYS[3], tonumber(ARGV[6]), tonumber(ARGV[7]), 1, now)
  if not user_tat then return {'rate_limited', wait} end
  room_tat, wait = gcra_peek(KEYS[5], tonumber(ARGV[8]), tonumber(ARGV[9]), 1, now)
  if not room_tat then return {'rate_limited', wait} end
  gcra_commit(KEYS[3], user_tat, now)
  gcra_commit(KEYS[5], room_tat, now)
  if slow > 0 then
    redis.call('SET', KEYS[4], '1', 'PX', slow * 1000)
  end
end

-- `last`, the room's previous id, goes out as `prev`: a node that has seen a later id
-- than that has seen ids that Redis lost (danmaku/fanout.py)
local last = tonumber(redis.call('GET', KEYS[6]) or '0')
local floor = ids_floor(KEYS[1], 'dm_rid', last, t)
local seq = redis.call('INCRBY', KEYS[6], floor - last + 1)  -- INCRBY keeps the key's TTL
-- how many the room accepted (ids may jump, so they are no count); a room older than this
-- counter had dense ids: its last id was its count
redis.call('HSETNX', KEYS[1], 'dm_count', last)
redis.call('HINCRBY', KEYS[1], 'dm_count', 1)
local sid = string.format('%d', seq)
redis.call('HINCRBY', KEYS[9], math.floor(now / 60000), 1)
local prio = tonumber(ARGV[4])
redis.call('XADD', KEYS[7], 'MAXLEN', tonumber(ARGV[10]), sid .. '-0',
  'u', ARGV[1], 'n', ARGV[2], 't', ARGV[3], 'ts', now, 'p', prio, 'pv', string.format('%d', last))
redis.call('PUBLISH', ARGV[11], cmsgpack.pack({
  type = '_dm', id = seq, prev = last, user = ARGV[1], name = ARGV[2], text = ARGV[3], ts_ms = now, prio = prio
}))
if ARGV[13] == '1' then
  redis.call('SET', KEYS[8], sid .. ':' .. string.format('%d', now), 'EX', tonumber(ARGV[12]))
end
return {'ok', seq, now}
