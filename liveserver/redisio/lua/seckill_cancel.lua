-- Cancel a pending order (its buyer or an admin): its stock returns, once.
-- KEYS: meta, buyers, orders, deadlines, stream   ARGV[1] order_id
-- Returns {'cancelled'|'already_cancelled'|'paid'|'expired'|'not_found', order_json}.
local keys = {meta = KEYS[1], buyers = KEYS[2], orders = KEYS[3], deadlines = KEYS[4], stream = KEYS[5]}
local raw = redis.call('HGET', keys.orders, ARGV[1])
if not raw then return {'not_found', ''} end
local o = cjson.decode(raw)
if o.status == 'cancelled' then return {'already_cancelled', raw} end
if o.status ~= 'pending' then return {o.status, raw} end
local now = now_ms()
local d = load(keys.meta)
if now > o.expires_at_ms then
  release(d, keys, o, 'expired', now)
  return {'expired', cjson.encode(o)}
end
release(d, keys, o, 'cancelled', now)
return {'cancelled', cjson.encode(o)}
