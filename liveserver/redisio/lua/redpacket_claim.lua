-- Claims of one red packet, decided one by one in arrival order: one share per
-- user (a repeat gets the first amount again, marked duplicate), the window
-- (Redis's clock), the per-user cap across a rain.
-- KEYS[1] meta  KEYS[2] shares list  KEYS[3] claims (user -> cents)  KEYS[4] claim times (user -> ms)
-- KEYS[5] the rain's per-user claim counts  KEYS[6] wallet stream
-- ARGV: per claim, the user and a refusal the node decided ('blocked' or ''), in pairs
-- Returns per claim {answer, amount_cents, duplicate (0|1)}.
local p = load(KEYS[1])
local out = {}
local n = #ARGV / 2
if not p then
  for i = 1, n do out[i] = {'not_found', 0, 0} end
  return out
end
local now = now_ms()
local was = status(p, now)
local lucky = tonumber(redis.call('HGET', KEYS[1], 'lucky_cents')) or 0
for i = 1, n do
  local user, refusal = ARGV[2 * i - 1], ARGV[2 * i]
  local prev = redis.call('HGET', KEYS[3], user)
  if prev then
    out[i] = {'ok', tonumber(prev), 1}
  else
    local st = status(p, now)
    if refusal ~= '' then out[i] = {refusal, 0, 0}
    elseif st == 'countdown' then out[i] = {'not_started', 0, 0}
    elseif st == 'expired' then out[i] = {'expired', 0, 0}
    elseif st == 'empty' then out[i] = {'empty', 0, 0}
    elseif p.rain_cap > 0 and (tonumber(redis.call('HGET', KEYS[5], user)) or 0) >= p.rain_cap then
      out[i] = {'limit', 0, 0}
    else
      local share = tonumber(redis.call('LPOP', KEYS[2]))
      redis.call('HSET', KEYS[3], user, share)
      redis.call('HSET', KEYS[4], user, now)
      if p.rain_cap > 0 then redis.call('HINCRBY', KEYS[5], user, 1) end
      p.claimed_count = p.claimed_count + 1
      p.claimed_cents = p.claimed_cents + share
      if share > lucky then  -- strictly greater: the first claimant wins a tie
        lucky = share
        redis.call('HSET', KEYS[1], 'lucky_user', user, 'lucky_cents', share)
      end
      log_wallet(KEYS[6], p, 'claim', user, share, now)
      out[i] = {'ok', share, 0}
    end
  end
end
redis.call('HSET', KEYS[1], 'claimed_count', p.claimed_count, 'claimed_cents', p.claimed_cents)
if was ~= 'empty' and status(p, now) == 'empty' then announce(p, now) end
return out
