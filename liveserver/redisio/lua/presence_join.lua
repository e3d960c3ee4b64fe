-- A user joins a room through a node (the node's first connection of that user).
-- KEYS[1] nodes zset (node -> expiry ms)  KEYS[2] the node's member set
-- KEYS[3] online hash (user -> live nodes holding them)
-- ARGV[1] node id  ARGV[2] node ttl ms  ARGV[3] user
-- The invariant and the revival of a reaped node: _presence_lib.lua.
-- Returns online (HLEN).
presence_alive(KEYS[1], KEYS[2], KEYS[3], ARGV[1], tonumber(ARGV[2]))
if redis.call('SADD', KEYS[2], ARGV[3]) == 1 then
  redis.call('HINCRBY', KEYS[3], ARGV[3], 1)
end
return redis.call('HLEN', KEYS[3])
