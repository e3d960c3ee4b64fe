-- Shared by the seckill_*.lua scripts (prepended to each when it is loaded).
-- A drop is a flash sale or a coupon; all its keys share the hash tag {d:<id>}.
-- Meta hash fields: kind (sale|coupon), id, room, product, price, discount,
-- stock, left, pending, paid, per_user, starts, ends, pay_ms, channel, ended, seq,
-- title and list_price (the product's title and price when the drop was made),
-- announced (when the last stock push went out, ms).
-- Invariant kept by every script: left + pending + paid = stock (coupons: paid
-- counts claimed coupons, pending stays 0).

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local FIELDS = {'kind', 'id', 'room', 'product', 'price', 'discount', 'stock', 'left', 'pending',
  'paid', 'per_user', 'starts', 'ends', 'pay_ms', 'channel', 'ended', 'title', 'list_price'}

local function load(meta)
  local v = redis.call('HMGET', meta, unpack(FIELDS))
  if not v[1] then return nil end
  return {kind = v[1], id = v[2], room = v[3], product = v[4], price = tonumber(v[5]),
    discount = tonumber(v[6]) or 0, stock = tonumber(v[7]), left = tonumber(v[8]),
    pending = tonumber(v[9]), paid = tonumber(v[10]), per_user = tonumber(v[11]),
    starts = tonumber(v[12]), ends = tonumber(v[13]), pay_ms = tonumber(v[14]),
    channel = v[15], ended = v[16] == '1', title = v[17], list_price = tonumber(v[18])}
end

local function status(d, now)
  if d.ended or now >= d.ends then return 'ended' end
  if now < d.starts then return 'countdown' end
  if d.left <= 0 then return 'sold_out' end
  return 'live'
end

-- Tell the room's viewers (every node) how the drop stands.
local function announce(d, now)
  local msg = {product_id = d.product, status = status(d, now), starts_at_ms = d.starts,
    ends_at_ms = d.ends, stock_left = d.left, price_cents = d.price, stock = d.stock,
    per_user_limit = d.per_user}
  if d.title then msg.title = d.title end
  if d.list_price then msg.original_price_cents = d.list_price end
  if d.kind == 'coupon' then
    msg.type = 'coupon'; msg.coupon_id = d.id; msg.discount_cents = d.discount
  else
    msg.type = 'flash_sale'; msg.sale_id = d.id
  end
  redis.call('PUBLISH', d.channel, cmsgpack.pack(msg))
end

-- Append an order's new state to the order stream (for the downstream order service).
local function log_order(stream, o, now)
  redis.call('XADD', stream, 'MAXLEN', '~', 1000000, '*', 'order_id', o.order_id, 'sale_id', o.sale_id,
    'room_id', o.room_id, 'product_id', o.product_id or '', 'user', o.user, 'status', o.status, 'qty', o.qty,
    'price_cents', o.price_cents, 'at_ms', now)
end

-- A pending order gives its stock back (expired or cancelled): once, since only
-- a 'pending' order gets here and it leaves 'pending' in the same step.
-- keys: meta, buyers, orders, deadlines, stream.  Announces a restock.
local function release(d, keys, o, new_status, now)
  o.status = new_status
  o.closed_ms = now
  redis.call('HSET', keys.orders, o.order_id, cjson.encode(o))
  redis.call('ZREM', keys.deadlines, o.order_id)
  local was_sold_out = d.left <= 0
  d.left = d.left + o.qty
  d.pending = d.pending - o.qty
  redis.call('HSET', keys.meta, 'left', d.left, 'pending', d.pending)
  if redis.call('HINCRBY', keys.buyers, o.user, -o.qty) <= 0 then
    redis.call('HDEL', keys.buyers, o.user)
  end
  log_order(keys.stream, o, now)
  if was_sold_out and status(d, now) == 'live' then announce(d, now) end
end
