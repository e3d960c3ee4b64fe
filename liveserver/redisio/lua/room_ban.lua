-- Ban a user from a room until an expiry (Redis clock), pruning old bans.
-- KEYS[1] banned zset (user -> expiry ms)
-- ARGV[1] user  ARGV[2] seconds
-- Returns the ban's expiry (ms).
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
local until_ms = now + tonumber(ARGV[2]) * 1000
redis.call('ZADD', KEYS[1], until_ms, ARGV[1])
return until_ms
