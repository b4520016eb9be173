--[[ status_outbox.lua — ws-push's coalescing of one region's status events.

A standalone script (lib.lua is not prepended). All keys share the hash tag {o:<region>}:
KEYS[1]  outbox   HASH   facility -> "<version>|<taken ms>|<status JSON>": the newest version
                         not yet sent; taken is 0 until a sender takes it, then when it did
KEYS[2]  gate     STRING exists while a frame went out less than a window ago
KEYS[3]  flusher  STRING exists while an invocation waits to send the next frame

ARGV[1] the operation, ARGV[2] now (ms), ARGV[3] the lease (ms) after which a taken entry
whose sender never said `done` is taken again (the sender died):
  offer  ARGV[4] window ms, then (facility, version, json) triples. Keeps each status unless
         the outbox holds its version or a newer one, then decides who sends:
           {'send', entries}  no frame went out within the window: send now (the leading edge)
           {'wait', ms}       this caller sends what gathered in `ms` (then calls take)
           {'queued'}         another caller is waiting to send: it will carry these too
  take   ARGV[4] window ms. Starts a new window and returns {'send', entries}.
  done   then (facility, value) pairs: forgets the entries that were sent, unless a newer
         version replaced one meanwhile.
entries is a flat list { facility, value, ... } of the entries not taken by another sender (or
taken longer than the lease ago), now marked taken by this one; value is what `done` compares.
So each status is sent once, and a sender that dies between take and done leaves its entries
to be sent by the next one after the lease: nothing is lost, at worst sent twice.
]]
local outbox, gate, flusher = KEYS[1], KEYS[2], KEYS[3]
local op, now, lease = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])

-- Marks the entries free to take (never taken, or taken by a sender that died) as taken now.
local function take_free()
  local all = redis.call('HGETALL', outbox)
  local out = {}
  for i = 1, #all, 2 do
    local version, taken, json = string.match(all[i + 1], '^(%d+)|(%d+)|(.*)$')
    if version and (tonumber(taken) == 0 or tonumber(taken) + lease < now) then
      local value = version .. '|' .. now .. '|' .. json
      redis.call('HSET', outbox, all[i], value)
      out[#out + 1] = all[i]
      out[#out + 1] = value
    end
  end
  return out
end

if op == 'offer' then
  local window = tonumber(ARGV[4])
  for i = 5, #ARGV, 3 do
    local fac, version, json = ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2]
    local cur = redis.call('HGET', outbox, fac)
    local cur_version = cur and tonumber(string.match(cur, '^(%d+)|'))
    if not cur_version or version > cur_version then
      redis.call('HSET', outbox, fac, version .. '|0|' .. json)
    end
  end
  -- Abandoned entries (every sender gone) do not stay forever.
  redis.call('PEXPIRE', outbox, 3600000)
  if redis.call('SET', gate, '1', 'NX', 'PX', window) then
    return { 'send', take_free() }
  end
  if redis.call('SET', flusher, '1', 'NX', 'PX', lease) then
    return { 'wait', math.max(redis.call('PTTL', gate), 0) }
  end
  return { 'queued' }
elseif op == 'take' then
  redis.call('SET', gate, '1', 'PX', tonumber(ARGV[4]))
  redis.call('DEL', flusher)
  return { 'send', take_free() }
elseif op == 'done' then
  for i = 4, #ARGV, 2 do
    if redis.call('HGET', outbox, ARGV[i]) == ARGV[i + 1] then
      redis.call('HDEL', outbox, ARGV[i])
    end
  end
  return { 'done' }
end
return redis.error_reply('unknown outbox operation ' .. tostring(op))
