-- A user leaves a room through a node (the node's last connection of that user closed).
-- KEYS[1] nodes zset  KEYS[2] the node's member set  KEYS[3] online hash
-- ARGV[1] node id  ARGV[2] user
-- Returns online (HLEN).
if redis.call('SREM', KEYS[2], ARGV[2]) == 1 and redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  if redis.call('HINCRBY', KEYS[3], ARGV[2], -1) <= 0 then
    redis.call('HDEL', KEYS[3], ARGV[2])
  end
end
return redis.call('HLEN', KEYS[3])
