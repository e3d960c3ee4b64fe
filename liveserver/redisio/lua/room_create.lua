-- Create a room unless its id is taken.
-- KEYS[1] room meta hash
-- ARGV[1] room_id  ARGV[2] title  ARGV[3] host
-- Returns {code, status, title, host, created_ms}: code 1 created, 2 the same host
-- created the same room before (a retried create), 0 taken.
local meta = KEYS[1]
if redis.call('EXISTS', meta) == 1 then
  local cur = redis.call('HMGET', meta, 'host', 'title', 'status', 'created_ms')
  if cur[1] == ARGV[3] and cur[2] == ARGV[2] then
    return {2, cur[3], cur[2], cur[1], cur[4]}
  end
  return {0, cur[3] or '', cur[2] or '', cur[1] or '', cur[4] or '0'}
end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('HSET', meta, 'room_id', ARGV[1], 'title', ARGV[2], 'host', ARGV[3],
  'status', 'scheduled', 'created_ms', now, 'dm_count', 0)
ids_mark(meta, 'dm_rid')  -- the danmaku counter starts at 1 on this instance
return {1, 'scheduled', ARGV[2], ARGV[3], string.format('%d', now)}
