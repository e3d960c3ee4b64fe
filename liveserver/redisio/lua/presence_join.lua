-- A user joins a room through a node (the node's first connection of that user).
-- KEYS[1] nodes zset (node -> expiry ms)  KEYS[2] the node's member set
-- KEYS[3] online hash (user -> live nodes holding them)
-- ARGV[1] node id  ARGV[2] node ttl ms  ARGV[3] user
-- Invariant kept by every presence script: online[user] = the number of
-- nodes in KEYS[1] whose member set holds user.  A node that is absent from
-- KEYS[1] (reaped while it was paused) is revived first: its members count again.
-- Returns online (HLEN).
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  for _, m in ipairs(redis.call('SMEMBERS', KEYS[2])) do
    redis.call('HINCRBY', KEYS[3], m, 1)
  end
  redis.call('PERSIST', KEYS[2])
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
if redis.call('SADD', KEYS[2], ARGV[3]) == 1 then
  redis.call('HINCRBY', KEYS[3], ARGV[3], 1)
end
return redis.call('HLEN', KEYS[3])
