-- At (or after) its expiry, refund what was not claimed, exactly once across nodes;
-- with ARGV[1] = 'end', expire it now (its room ended) and refund; with
-- 'announce', just publish how the packet stands (its start).
-- KEYS[1] meta  KEYS[2] shares list  KEYS[3] wallet stream
-- Returns {status, refunded_cents (-1: not yet)}.
local p = load(KEYS[1])
if not p then return {'gone', -1} end
local now = now_ms()
if ARGV[1] == 'end' and now < p.expires then
  p.expires = now
  redis.call('HSET', KEYS[1], 'expires', now)
end
if ARGV[1] ~= 'announce' and now >= p.expires and p.refunded < 0 then
  local rest = p.total - p.claimed_cents
  redis.call('HSET', KEYS[1], 'refunded', rest)
  redis.call('DEL', KEYS[2])
  p.refunded = rest
  if rest > 0 then log_wallet(KEYS[3], p, 'refund', '', rest, now) end
end
announce(p, now)
return {status(p, now), p.refunded}
