-- A node's heartbeat for one room, and the room's presence as it stands.
-- KEYS[1] nodes zset  KEYS[2] the node's member set  KEYS[3] online hash
-- ARGV[1] node id  ARGV[2] node ttl ms
-- A node that had been reaped (paused past its ttl) is revived: its members count again.
-- Returns {online, dead node ids...}: the caller reaps the dead ones
-- (their member-set keys are built by the caller, never here).
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  for _, m in ipairs(redis.call('SMEMBERS', KEYS[2])) do
    redis.call('HINCRBY', KEYS[3], m, 1)
  end
  redis.call('PERSIST', KEYS[2])
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
local out = {redis.call('HLEN', KEYS[3])}
for _, n in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)) do
  out[#out + 1] = n
end
return out
