-- Ban or mute a user in a room until an expiry (Redis clock); 0 seconds lifts it.
-- Expired entries are pruned on the way.
-- KEYS[1] the bans or mutes zset (user -> until ms)
-- ARGV[1] user  ARGV[2] seconds (0 lifts)
-- Returns the expiry (ms), or 0 when lifted.
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
if tonumber(ARGV[2]) == 0 then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 0
end
local until_ms = now + tonumber(ARGV[2]) * 1000
redis.call('ZADD', KEYS[1], until_ms, ARGV[1])
return until_ms
