-- Shared by the scripts that hand out ids from a counter (prepended when loaded):
-- danmaku ids (room_create, danmaku_send) and order ids (seckill_*).
--
-- Ids that never repeat, even after Redis loses its last second.  A crash with
-- AOF `everysec`, or a failover with asynchronous replication, can take the
-- last writes away, and a counter with them: the ids issued in that second
-- would be issued again, to other buyers and other danmaku.  So each counter
-- remembers the Redis instance (INFO run_id: new at every start and on every
-- promoted replica) that last advanced it.  On another instance it first jumps
-- to Redis's clock in microseconds, which is above every id issued before the
-- loss as long as a counter never issued more than a million ids a second (the
-- rate limits keep every counter far below that).  Between restarts ids stay
-- dense: 1, 2, 3, ...  A counter's owner records the instance when it creates
-- the counter (ids_mark), so a new room or drop starts at 1.

local function ids_instance()
  return string.match(redis.call('INFO', 'server'), 'run_id:(%x+)') or ''
end

-- Record the instance in `hash`.`field` (at the counter's creation).
local function ids_mark(hash, field)
  redis.call('HSET', hash, field, ids_instance())
end

-- The value a counter must be raised to before its next id: `current`, or
-- the clock in microseconds when another instance advanced it last (the
-- instance is then recorded).  `t` is redis.call('TIME').
local function ids_floor(hash, field, current, t)
  local instance = ids_instance()
  if redis.call('HGET', hash, field) == instance then return current end
  redis.call('HSET', hash, field, instance)
  local us = tonumber(t[1]) * 1000000 + tonumber(t[2])
  if us > current then return us end
  return current
end
