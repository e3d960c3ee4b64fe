-- Shared by the redpacket_*.lua scripts (prepended to each when it is loaded).
-- A packet's keys share the hash tag of its rain ({p:<rain or packet id>}).
-- Meta fields: id, room, total, count, claimed_count, claimed_cents,
-- refunded (-1 until the expiry refund ran), starts, expires, channel,
-- lucky_user, lucky_cents, rain_cap (0: no cap across the rain).
-- Invariant: claimed_cents + (the shares left) = total; after expiry,
-- claimed_cents + refunded = total.

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function load(meta)
  local v = redis.call('HMGET', meta, 'id', 'room', 'total', 'count', 'claimed_count', 'claimed_cents',
    'refunded', 'starts', 'expires', 'channel', 'rain_cap')
  if not v[1] then return nil end
  return {id = v[1], room = v[2], total = tonumber(v[3]), count = tonumber(v[4]),
    claimed_count = tonumber(v[5]), claimed_cents = tonumber(v[6]), refunded = tonumber(v[7]),
    starts = tonumber(v[8]), expires = tonumber(v[9]), channel = v[10], rain_cap = tonumber(v[11])}
end

local function status(p, now)
  if p.claimed_count >= p.count then return 'empty' end
  if now >= p.expires then return 'expired' end
  if now < p.starts then return 'countdown' end
  return 'live'
end

local function announce(p, now)
  redis.call('PUBLISH', p.channel, cmsgpack.pack({type = 'red_packet', packet_id = p.id,
    status = status(p, now), starts_at_ms = p.starts, expires_at_ms = p.expires,
    count = p.count, claimed_count = p.claimed_count}))
end

-- Every movement of money goes to the wallet stream, for the payment system.
local function log_wallet(stream, p, kind, user, cents, now)
  redis.call('XADD', stream, 'MAXLEN', '~', 1000000, '*', 'kind', kind, 'packet_id', p.id,
    'room_id', p.room, 'user', user, 'amount_cents', cents, 'at_ms', now)
end
