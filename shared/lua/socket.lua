--[[ socket.lua — the session a WebSocket connection carries: one operation, atomically.

KEYS[1]   P:deadlines (routing only; see lib.lua)
ARGV[1]   P, the partition prefix presence:{pN}
ARGV[2]   now, ms since the epoch
ARGV[3]   session TTL, ms
ARGV[4]   how long offline flips are held after a data loss, ms (see lib.lua)
ARGV[5..10] session_id, user_id, facility_id, region, at_ms, operation
ARGV[11]  the connection id
ARGV[12]  the disconnect grace, ms (operation "linger")

Operations:
  bind    a heartbeat ("active") arriving on connection C: applied exactly as heartbeat.lua
          applies one, and the session remembers C as the socket that carries it (field conn).
  linger  connection C closed: if the session is live, carried by C (or by no socket) and had
          no heartbeat after the close, its deadline becomes min(deadline, at + grace) and it
          forgets C. Another socket that
          bound the session meanwhile (a new leader tab) keeps it; a reconnect or a new
          leader within the grace refreshes it; otherwise the sweeper takes it offline at the
          new deadline. A socket that closes is not proof that the browser left.
  ended   the session ends now, as an "ended" heartbeat.

Returns { outcome, flips, new_epoch }: the outcome codes of heartbeat.lua, plus
  l lingering (deadline shortened)    k kept (another socket carries it, or its deadline is
                                        already sooner)
]]
local now = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local sess, user, fac, region = ARGV[5], ARGV[6], ARGV[7], ARGV[8]
local at, op, conn = tonumber(ARGV[9]), ARGV[10], ARGV[11]

ensure_epoch(now, tonumber(ARGV[4]))
release_held(now)

local code
if op == 'bind' then
  code = apply_heartbeat(sess, user, fac, region, at, 'active', now, ttl)
  if code == 'n' or code == 'r' or code == 's' then
    redis.call('HSET', key('s:' .. fac .. '/' .. sess), 'conn', conn)
  end
elseif op == 'ended' then
  code = apply_heartbeat(sess, user, fac, region, at, 'ended', now, ttl)
elseif op == 'linger' then
  local member = fac .. '/' .. sess
  local sk = key('s:' .. member)
  local h = redis.call('HMGET', sk, 'user', 'deadline', 'offline', 'conn', 'last')
  if not h[1] or h[1] ~= user or h[3] then
    code = 'o'
  elseif (h[4] and h[4] ~= conn) or tonumber(h[5]) > at then
    -- Another socket carries it, or a heartbeat newer than the close (an HTTP one from the
    -- same browser, say) keeps it: either way the browser is still there.
    code = 'k'
  else
    local deadline = tonumber(h[2])
    local soon = at + tonumber(ARGV[12])
    redis.call('HDEL', sk, 'conn')
    if soon < deadline then
      redis.call('HSET', sk, 'deadline', soon)
      redis.call('ZADD', DEADLINES, soon, member)
      code = 'l'
    else
      code = 'k'
    end
  end
else
  return redis.error_reply('unknown socket operation ' .. tostring(op))
end

return { code, flips, new_epoch }
