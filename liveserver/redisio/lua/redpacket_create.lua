-- Create a red packet with its shares (split by the caller).  A retried create changes nothing.
-- KEYS[1] meta  KEYS[2] shares list
-- ARGV: id, room, total, count, starts_ms (0: now + countdown), countdown_ms, expires_after_ms,
--       channel, rain_cap, then the shares
-- Returns {'ok'|'exists', starts, expires}.
local now = now_ms()
if redis.call('EXISTS', KEYS[1]) == 1 then
  local v = redis.call('HMGET', KEYS[1], 'starts', 'expires')
  return {'exists', tonumber(v[1]), tonumber(v[2])}
end
local sum = 0
for i = 10, #ARGV do
  local s = tonumber(ARGV[i])
  if not s or s < 1 then return redis.error_reply('a share below 1 cent') end
  sum = sum + s
end
if sum ~= tonumber(ARGV[3]) or #ARGV - 9 ~= tonumber(ARGV[4]) then
  return redis.error_reply('the shares do not add up to the total')
end
local starts = tonumber(ARGV[5])
if starts == 0 then starts = now + tonumber(ARGV[6]) end
local expires = starts + tonumber(ARGV[7])
for i = 10, #ARGV, 500 do  -- in chunks: unpack() has a limit of about 8000 values
  redis.call('RPUSH', KEYS[2], unpack(ARGV, i, math.min(i + 499, #ARGV)))
end
redis.call('HSET', KEYS[1], 'id', ARGV[1], 'room', ARGV[2], 'total', ARGV[3], 'count', ARGV[4],
  'claimed_count', 0, 'claimed_cents', 0, 'refunded', -1, 'starts', starts, 'expires', expires,
  'channel', ARGV[8], 'rain_cap', ARGV[9], 'lucky_user', '', 'lucky_cents', 0, 'created', now)
announce(load(KEYS[1]), now)
return {'ok', starts, expires}
