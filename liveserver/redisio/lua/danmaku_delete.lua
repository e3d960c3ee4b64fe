-- Delete a danmaku: drop it from the history and tell every viewer.
-- KEYS[1] seq counter  KEYS[2] history stream
-- ARGV[1] id (its seq)  ARGV[2] channel
-- Returns 1, or 0 when no danmaku ever had that id.  Deleting twice is harmless.
local id = tonumber(ARGV[1])
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
if not id or id < 1 or id > last then return 0 end
redis.call('XDEL', KEYS[2], string.format('%d', id) .. '-0')  -- ids pass 1e14: never tostring
redis.call('PUBLISH', ARGV[2], cmsgpack.pack({type = 'danmaku_deleted', id = id}))
return 1
