-- Claim the due entries of the schedule, on Redis's clock: each due entry is
-- pushed a lease into the future and handed to this caller.  The caller removes
-- an entry only once its action reported done; an entry whose caller died (or
-- whose action was not yet due) comes back after the lease.  So every action
-- runs at least once, never before its time, and one node at a time.
-- KEYS[1] schedule zset (entry -> when, ms)
-- ARGV[1] lease ms  ARGV[2] at most this many entries
-- Returns the claimed entries.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[2]))
for _, entry in ipairs(due) do
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), entry)
end
return due
