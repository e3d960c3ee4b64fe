-- Shared by the presence_*.lua scripts (prepended when loaded).
-- Invariant kept by every presence script: online[user] = the number of nodes in
-- the nodes zset whose member set holds user.

-- Mark the node alive until now + ttl.  A node absent from the zset (reaped
-- while it was paused) is revived first: its members count again.
-- nodes: the room's nodes zset  members: the node's member set  online: the online hash
local function presence_alive(nodes, members, online, node, ttl_ms)
  local t = redis.call('TIME')
  local now = t[1] * 1000 + math.floor(t[2] / 1000)
  if not redis.call('ZSCORE', nodes, node) then
    for _, m in ipairs(redis.call('SMEMBERS', members)) do
      redis.call('HINCRBY', online, m, 1)
    end
    redis.call('PERSIST', members)
  end
  redis.call('ZADD', nodes, now + ttl_ms, node)
  return now
end
