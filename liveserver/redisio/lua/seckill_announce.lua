-- Announce how a drop stands (the scheduler, at its start and its end), or end
-- it early (its room ended).  Pending orders stay payable until their deadline.
-- KEYS[1] meta   ARGV[1] 'announce' or 'end'
-- Returns {status, left, pending, paid}.
local d = load(KEYS[1])
if not d then return {'gone', 0, 0, 0} end
local now = now_ms()
if ARGV[1] == 'end' and not d.ended and now < d.ends then
  d.ended = true
  redis.call('HSET', KEYS[1], 'ended', 1, 'ends', now)
  d.ends = now
end
announce(d, now)
return {status(d, now), d.left, d.pending, d.paid}
