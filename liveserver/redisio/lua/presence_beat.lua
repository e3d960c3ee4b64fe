-- A node's heartbeat for one room, and the room's presence as it stands.
-- KEYS[1] nodes zset  KEYS[2] the node's member set  KEYS[3] online hash
-- ARGV[1] node id  ARGV[2] node ttl ms
-- A node that had been reaped (paused past its ttl) is revived: its members count again.
-- Returns {online, dead node ids...}: the caller reaps the dead ones
-- (their member-set keys are built by the caller, never here).
local now = presence_alive(KEYS[1], KEYS[2], KEYS[3], ARGV[1], tonumber(ARGV[2]))
local out = {redis.call('HLEN', KEYS[3])}
for _, n in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)) do
  out[#out + 1] = n
end
return out
