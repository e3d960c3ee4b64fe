-- Pay a pending order (the payment system).  Paying twice is harmless.  A
-- payment that arrives after the deadline loses the race: the order expires
-- here, its stock returns, and the payment is refused.
-- KEYS: meta, buyers, orders, deadlines, stream, buyer_uv (HyperLogLog), stats (the host's
-- metrics: paid cents per minute, the last payment)   ARGV[1] order_id
-- Returns {'paid'|'already_paid'|'expired'|'cancelled'|'not_found', order_json}.
local keys = {meta = KEYS[1], buyers = KEYS[2], orders = KEYS[3], deadlines = KEYS[4], stream = KEYS[5]}
local raw = redis.call('HGET', keys.orders, ARGV[1])
if not raw then return {'not_found', ''} end
local o = cjson.decode(raw)
if o.status == 'paid' then return {'already_paid', raw} end
if o.status ~= 'pending' then return {o.status, raw} end
local d = load(keys.meta)
local now = now_ms()
if now > o.expires_at_ms then
  release(d, keys, o, 'expired', now)
  return {'expired', cjson.encode(o)}
end
o.status = 'paid'
o.paid_ms = now
redis.call('HSET', keys.orders, o.order_id, cjson.encode(o))
redis.call('ZREM', keys.deadlines, o.order_id)
redis.call('HSET', keys.meta, 'pending', d.pending - o.qty, 'paid', d.paid + o.qty)
log_order(keys.stream, o, now)
redis.call('PFADD', KEYS[6], o.user)
redis.call('HINCRBY', KEYS[7], 'g:' .. math.floor(now / 60000), o.price_cents * o.qty)
redis.call('HSET', KEYS[7], 'last_paid', now)
return {'paid', cjson.encode(o)}
