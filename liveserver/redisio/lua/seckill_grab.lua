-- Grab: a batch of grabs of one drop, decided one by one in arrival order.
-- Time window (Redis's clock), stock, per-user limit, the user's and the IP's
-- grab rates, and idempotency on (user, req_id): a repeated grab gets its first
-- answer and takes nothing more.  A sale grab creates the pending order with its
-- payment deadline in the same step; a coupon grab records the coupon.
-- KEYS[1] meta  KEYS[2] buyers (user -> held)  KEYS[3] answers ("user\nreq" -> answer)
-- KEYS[4] orders (order_id -> json)  KEYS[5] deadlines (order_id -> ms)  KEYS[6] order stream
-- KEYS[7] winners (everyone who ever won: a node sends their grabs to Redis, as they may be retries)
-- KEYS[8] order_uv (HyperLogLog)  KEYS[9] stats (the host's metrics: orders per minute)
-- then per grab i: KEYS[9 + 2i - 1] the user's rate cell, KEYS[9 + 2i] the IP's rate cell
-- ARGV[1] user rate/s  ARGV[2] user burst  ARGV[3] ip rate/s  ARGV[4] ip burst
-- ARGV[5] the kind the grabs asked for ('sale' or 'coupon')
-- then per grab i: ARGV[5 + 3i - 2] user, ARGV[5 + 3i - 1] req_id, ARGV[5 + 3i] a refusal
-- the node decided ('blocked' by its anti-fraud rules, or ''): answered and remembered
-- like any other answer, after a replay of an earlier one.
-- Returns per grab {answer, order_id or '', expires_at_ms or 0}.
local keys = {meta = KEYS[1], buyers = KEYS[2], orders = KEYS[4], deadlines = KEYS[5], stream = KEYS[6]}
local d = load(keys.meta)
local n = (#ARGV - 5) / 3
local out = {}
if not d or d.kind ~= ARGV[5] then
  for i = 1, n do out[i] = {'not_found', '', 0} end
  return out
end
local now = now_ms()
local user_rate, user_burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local ip_rate, ip_burst = tonumber(ARGV[3]), tonumber(ARGV[4])

local sold_before = d.left <= 0
local left_before = d.left
local ids_checked = false
for i = 1, n do
  local user, req, refusal = ARGV[5 + 3 * i - 2], ARGV[5 + 3 * i - 1], ARGV[5 + 3 * i]
  local akey = user .. '\n' .. req
  local prev = redis.call('HGET', KEYS[3], akey)
  if prev then
    local a, oid, exp = string.match(prev, '^([^\n]*)\n([^\n]*)\n(%d+)$')
    out[i] = {a, oid, tonumber(exp)}
  else
    local answer, oid, exp = nil, '', 0
    local st = status(d, now)
    if refusal ~= '' then answer = refusal
    elseif st == 'countdown' then answer = 'not_started'
    elseif st == 'ended' then answer = 'ended'
    elseif not gcra_take(KEYS[9 + 2 * i - 1], user_rate, user_burst, now) then answer = 'rate_limited'
    elseif not gcra_take(KEYS[9 + 2 * i], ip_rate, ip_burst, now) then answer = 'rate_limited'
    -- a user at their limit hears 'limit' whatever the stock: a winner is never told 'sold_out'
    elseif (tonumber(redis.call('HGET', keys.buyers, user)) or 0) + 1 > d.per_user then answer = 'limit'
    elseif d.left <= 0 then answer = 'sold_out'
    else
      answer = 'ok'
      redis.call('SADD', KEYS[7], user)
      d.left = d.left - 1
      redis.call('HINCRBY', keys.buyers, user, 1)
      if d.kind == 'sale' then
        d.pending = d.pending + 1
        if not ids_checked then  -- once per batch, and only when it sells something
          ids_checked = true
          local cur = tonumber(redis.call('HGET', keys.meta, 'seq')) or 0
          redis.call('HSETNX', keys.meta, 'orders', cur)  -- a drop older than this counter: seq was its count
          local floor = ids_floor(keys.meta, 'rid', cur, redis.call('TIME'))
          if floor > cur then redis.call('HSET', keys.meta, 'seq', string.format('%d', floor)) end
        end
        local seq = redis.call('HINCRBY', keys.meta, 'seq', 1)
        redis.call('HINCRBY', keys.meta, 'orders', 1)  -- the count: seq may have jumped (_ids_lib.lua)
        oid = d.id .. '.' .. string.format('%d', seq)
        exp = now + d.pay_ms
        local o = {order_id = oid, sale_id = d.id, room_id = d.room, product_id = d.product, user = user, status = 'pending',
          price_cents = d.price, qty = 1, created_ms = now, expires_at_ms = exp}
        redis.call('HSET', keys.orders, oid, cjson.encode(o))
        redis.call('ZADD', keys.deadlines, exp, oid)
        log_order(keys.stream, o, now)
        redis.call('PFADD', KEYS[8], user)
        redis.call('HINCRBY', KEYS[9], 'o:' .. math.floor(now / 60000), 1)
      else
        d.paid = d.paid + 1
      end
    end
    -- rate-limited answers are not kept: a retry after the wait is a new decision
    if answer ~= 'rate_limited' then
      redis.call('HSET', KEYS[3], akey, answer .. '\n' .. oid .. '\n' .. string.format('%d', exp))
    end
    out[i] = {answer, oid, exp}
  end
end
redis.call('HSET', keys.meta, 'left', d.left, 'pending', d.pending, 'paid', d.paid)
if d.left <= 0 and not sold_before then
  redis.call('HSET', keys.meta, 'sold_out_ms', now)  -- the sell-out marker on the host's series
  announce(d, now)
elseif d.left ~= left_before then
  -- every viewer sees the stock fall: at most one push a second per drop, from every node together
  local last = tonumber(redis.call('HGET', keys.meta, 'announced')) or 0
  if now - last >= 1000 then
    redis.call('HSET', keys.meta, 'announced', now)
    announce(d, now)
  end
end
return out
