-- GCRA (generic cell rate algorithm): take `cost` tokens from a bucket that
-- refills at `rate` per second and holds `burst`.  One key, Redis's clock.
-- KEYS[1] the cell (theoretical arrival time, ms)
-- ARGV[1] rate per second  ARGV[2] burst  ARGV[3] cost
-- Returns {allowed (1 or 0), retry_after_ms}.
local t = redis.call('TIME')
local now = t[1] * 1000 + t[2] / 1000
local interval = 1000 / tonumber(ARGV[1])
local tolerance = interval * tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local new_tat = tat + interval * tonumber(ARGV[3])
local allow_at = new_tat - tolerance
if allow_at > now then
  return {0, math.ceil(allow_at - now)}
end
redis.call('SET', KEYS[1], tostring(new_tat), 'PX', math.ceil(new_tat - now) + 1)
return {1, 0}
