-- A room's presence as it stands, for a reader that holds no viewers of it.
-- KEYS[1] nodes zset  KEYS[2] online hash
-- Returns {online, dead node ids...}.
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local out = {redis.call('HLEN', KEYS[2])}
for _, n in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)) do
  out[#out + 1] = n
end
return out
