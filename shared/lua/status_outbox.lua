--[[ status_outbox.lua — ws-push's coalescing of one region's status events.

A standalone script (lib.lua is not prepended). All keys share the hash tag {o:<region>}:
KEYS[1]  outbox   HASH   facility -> "<version>|<status JSON>", the newest version not yet sent
KEYS[2]  gate     STRING exists while a frame went out less than a window ago
KEYS[3]  flusher  STRING exists while an invocation waits to send the next frame

ARGV[1] the operation:
  offer  ARGV[2] window ms, ARGV[3] flusher lease ms, then (facility, version, json) triples.
         Keeps each status unless the outbox holds a newer version, then decides who sends:
           {'send', entries}  no frame went out within the window: send now (the leading edge)
           {'wait', ms}       this caller sends what gathered in `ms` (then calls take)
           {'queued'}         another caller is waiting to send: it will carry these too
  take   ARGV[2] window ms. Starts a new window and returns {'send', entries}.
  done   then (facility, value) pairs: forgets the entries that were sent, unless a newer
         version replaced one meanwhile.
entries is a flat list { facility, value, ... }. Entries stay until `done`, so a caller that
dies between take and done leaves them for the next frame: nothing is lost, at worst re-sent.
]]
local outbox, gate, flusher = KEYS[1], KEYS[2], KEYS[3]
local op = ARGV[1]

if op == 'offer' then
  local window, lease = tonumber(ARGV[2]), tonumber(ARGV[3])
  for i = 4, #ARGV, 3 do
    local fac, version, json = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
    local cur = redis.call('HGET', outbox, fac)
    local cur_version = cur and tonumber(string.match(cur, '^(%d+)|'))
    if not cur_version or version > cur_version then
      redis.call('HSET', outbox, fac, version .. '|' .. json)
    end
  end
  -- Abandoned entries (every sender gone) do not stay forever.
  redis.call('PEXPIRE', outbox, 3600000)
  if redis.call('SET', gate, '1', 'NX', 'PX', window) then
    return { 'send', redis.call('HGETALL', outbox) }
  end
  if redis.call('SET', flusher, '1', 'NX', 'PX', lease) then
    return { 'wait', math.max(redis.call('PTTL', gate), 0) }
  end
  return { 'queued' }
elseif op == 'take' then
  redis.call('SET', gate, '1', 'PX', tonumber(ARGV[2]))
  redis.call('DEL', flusher)
  return { 'send', redis.call('HGETALL', outbox) }
elseif op == 'done' then
  for i = 2, #ARGV, 2 do
    if redis.call('HGET', outbox, ARGV[i]) == ARGV[i + 1] then
      redis.call('HDEL', outbox, ARGV[i])
    end
  end
  return { 'done' }
end
return redis.error_reply('unknown outbox operation ' .. tostring(op))
