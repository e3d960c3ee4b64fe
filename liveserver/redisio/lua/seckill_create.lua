-- Create a drop (flash sale or coupon).  Stock is loaded here, once, by an
-- explicit step: a retried create with the same id changes nothing.
-- KEYS[1] meta
-- ARGV: kind, id, room, product, price, discount, stock, per_user, starts_ms
--       (0: now + countdown), countdown_ms, duration_ms, pay_ms, channel,
--       title, list_price (the product's, shown with the drop)
-- Returns {'ok'|'exists', starts, ends}.
local now = now_ms()
if redis.call('EXISTS', KEYS[1]) == 1 then
  local v = redis.call('HMGET', KEYS[1], 'starts', 'ends')
  return {'exists', tonumber(v[1]), tonumber(v[2])}
end
local starts = tonumber(ARGV[9])
if starts == 0 then starts = now + tonumber(ARGV[10]) end
local ends = starts + tonumber(ARGV[11])
redis.call('HSET', KEYS[1], 'kind', ARGV[1], 'id', ARGV[2], 'room', ARGV[3], 'product', ARGV[4],
  'price', ARGV[5], 'discount', ARGV[6], 'stock', ARGV[7], 'left', ARGV[7], 'pending', 0, 'paid', 0,
  'per_user', ARGV[8], 'starts', starts, 'ends', ends, 'pay_ms', ARGV[12], 'channel', ARGV[13],
  'ended', 0, 'seq', 0, 'orders', 0, 'created', now, 'title', ARGV[14], 'list_price', ARGV[15])
ids_mark(KEYS[1], 'rid')  -- order ids start at 1 on this instance
announce(load(KEYS[1]), now)
return {'ok', starts, ends}
