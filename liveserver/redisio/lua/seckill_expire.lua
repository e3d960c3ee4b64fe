-- Expire the orders whose payment deadline passed (the sweeper).  Safe from many
-- nodes at once and again: each order is claimed here, and only a pending one
-- returns its stock.
-- KEYS: meta, buyers, orders, deadlines, stream   ARGV[1] at most this many orders
-- Returns {expired count, status, pending}.
local keys = {meta = KEYS[1], buyers = KEYS[2], orders = KEYS[3], deadlines = KEYS[4], stream = KEYS[5]}
local d = load(keys.meta)
if not d then return {0, 'gone', 0} end
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', keys.deadlines, '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
local count = 0
for _, oid in ipairs(due) do
  local raw = redis.call('HGET', keys.orders, oid)
  if raw then
    local o = cjson.decode(raw)
    if o.status == 'pending' then
      release(d, keys, o, 'expired', now)
      count = count + 1
    else
      redis.call('ZREM', keys.deadlines, oid)
    end
  else
    redis.call('ZREM', keys.deadlines, oid)
  end
end
return {count, status(d, now), d.pending}
