-- Pin a product in a room that has not ended, announce it and mark it on the
-- metrics series (the last 200 events are kept), in one step.
-- KEYS[1] room meta hash  KEYS[2] products hash  KEYS[3] the room's event markers (zset)
-- ARGV[1] product id  ARGV[2] the room's channel
-- Returns {'ok', product_json}, {'not_found', 'room'|'product'} or {'conflict', status}.
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'not_found', 'room'} end
if status == 'ended' then return {'conflict', status} end
local raw = redis.call('HGET', KEYS[2], ARGV[1])
if not raw then return {'not_found', 'product'} end
local p = cjson.decode(raw)
redis.call('HSET', KEYS[1], 'pinned', ARGV[1])
redis.call('PUBLISH', ARGV[2], cmsgpack.pack({
  type = 'product_pinned', product_id = p.product_id, title = p.title, price_cents = p.price_cents
}))
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[3], now, cjson.encode({kind = 'pin', product_id = p.product_id, title = p.title, at = now}))
redis.call('ZREMRANGEBYRANK', KEYS[3], 0, -201)
return {'ok', raw}
