-- Health: proves that scripts run (EVALSHA, reloaded by redis-py after a
-- SCRIPT FLUSH or a restart) and that Redis accepts writes-capable scripts.
-- KEYS none  ARGV none
-- Returns Redis's clock in milliseconds.
local t = redis.call('TIME')
return t[1] * 1000 + math.floor(t[2] / 1000)
