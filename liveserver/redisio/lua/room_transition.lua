-- Move a room along scheduled -> live -> ended.
-- KEYS[1] room meta hash; KEYS[2..n] the room's other keys (expired on end)
-- ARGV[1] 'start' or 'end'  ARGV[2] seconds to keep an ended room  ARGV[3] the room's channel
-- Returns {code, status}: code 'ok' changed (and 'room {status}' published in
-- the same step), 'same' already there (a retry is harmless), 'not_found',
-- 'conflict' (start after end).
local meta = KEYS[1]
local keep = tonumber(ARGV[2])
local status = redis.call('HGET', meta, 'status')
if not status then return {'not_found', ''} end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
if ARGV[1] == 'start' then
  if status == 'live' then return {'same', status} end
  if status ~= 'scheduled' then return {'conflict', status} end
  redis.call('HSET', meta, 'status', 'live', 'started_ms', now)
  redis.call('PUBLISH', ARGV[3], cmsgpack.pack({type = 'room', status = 'live'}))
  return {'ok', 'live'}
end
if status == 'ended' then return {'same', status} end
redis.call('HSET', meta, 'status', 'ended', 'ended_ms', now)
for i = 1, #KEYS do redis.call('EXPIRE', KEYS[i], keep) end
redis.call('PUBLISH', ARGV[3], cmsgpack.pack({type = 'room', status = 'ended'}))
return {'ok', 'ended'}
