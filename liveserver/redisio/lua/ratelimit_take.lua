-- Take `cost` tokens from a rate limit (GCRA, _gcra_lib.lua): the HTTP write limit.
-- KEYS[1] the cell (theoretical arrival time, ms)
-- ARGV[1] rate per second  ARGV[2] burst  ARGV[3] cost
-- Returns {allowed (1 or 0), retry_after_ms}.
local t = redis.call('TIME')
local now = t[1] * 1000 + t[2] / 1000
local new_tat, wait = gcra_peek(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), now)
if not new_tat then return {0, wait} end
gcra_commit(KEYS[1], new_tat, now)
return {1, 0}
