-- GCRA (generic cell rate algorithm), shared by every script that limits a rate
-- (prepended when loaded): a cell that refills at `rate` per second and holds
-- `burst`, kept as its theoretical arrival time in ms under one key, on
-- Redis's clock.  Check first, write after: a script that limits two cells
-- (a user's and a room's) writes neither when one refuses.

-- The cell's new arrival time if `cost` tokens may be taken now, else nil and
-- the ms to wait.  Writes nothing.
local function gcra_peek(key, rate, burst, cost, now)
  local interval = 1000 / rate
  local tat = tonumber(redis.call('GET', key)) or now
  if tat < now then tat = now end
  local new_tat = tat + interval * cost
  local allow_at = new_tat - interval * burst
  if allow_at > now then return nil, math.ceil(allow_at - now) end
  return new_tat, 0
end

-- Store what gcra_peek allowed; the key lives until the cell is full again.
local function gcra_commit(key, new_tat, now)
  redis.call('SET', key, string.format('%.3f', new_tat), 'PX', math.ceil(new_tat - now) + 1)
end

-- Take one token if there is one.
local function gcra_take(key, rate, burst, now)
  local new_tat = gcra_peek(key, rate, burst, 1, now)
  if not new_tat then return false end
  gcra_commit(key, new_tat, now)
  return true
end
