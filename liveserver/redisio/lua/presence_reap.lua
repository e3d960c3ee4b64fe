-- Take a dead node's users out of a room's presence.  Safe to run from many
-- nodes at once and again: only a node still listed and still expired is reaped.
-- KEYS[1] nodes zset  KEYS[2] the dead node's member set  KEYS[3] online hash
-- ARGV[1] node id  ARGV[2] how long to keep the member set (ms)
-- The member set is kept that long so that a node that was only paused can
-- revive its members (a live node's set never expires).  Returns online (HLEN).
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) < now then
  for _, m in ipairs(redis.call('SMEMBERS', KEYS[2])) do
    if redis.call('HINCRBY', KEYS[3], m, -1) <= 0 then
      redis.call('HDEL', KEYS[3], m)
    end
  end
  redis.call('ZREM', KEYS[1], ARGV[1])
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
return redis.call('HLEN', KEYS[3])
