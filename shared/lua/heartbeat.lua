--[[ heartbeat.lua — apply a batch of heartbeats to one partition, atomically.

KEYS[1]   P:deadlines (routing only; see lib.lua)
ARGV[1]   P, the partition prefix presence:{pN}
ARGV[2]   now, ms since the epoch (the caller's clock: time is an argument)
ARGV[3]   session TTL, ms
ARGV[4]   how long offline flips are held after a data loss, ms (see lib.lua)
ARGV[5..] heartbeats, 6 fields each, in order of receive time:
          session_id, user_id, facility_id, region, at_ms, state ("active" | "ended")

SQS delivers at least once and out of order, so every heartbeat is judged against what is
stored: a deadline only moves forward, and a heartbeat older than the session's last one
changes nothing.

Returns { outcomes, flips, new_epoch } where outcomes has one character per heartbeat:
  n new session        r refreshed         e ended             s new online segment
  o old or duplicate   t too late to count c user conflict     x end of an unknown session
flips is a list of { facility, region, status, since_ms, version, online_sessions }, and
new_epoch is 1 when this call started the partition's epoch (see lib.lua).
]]
local now = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local out = {}

-- An offline session heartbeating again: too late to count ('t'), or a new online segment.
local function restart(member, sess, user, fac, region, at)
  if at + ttl <= now then
    return 't'
  end
  go_online(member, sess, user, fac, region, at, at + ttl, now)
  return 's'
end

ensure_epoch(now, tonumber(ARGV[4]))
release_held(now)

for i = 5, #ARGV, 6 do
  local sess, user, fac, region = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local at, state = tonumber(ARGV[i + 4]), ARGV[i + 5]
  local member = fac .. '/' .. sess
  local sk = key('s:' .. member)
  -- `started` read here too, so an end needs no second read.
  local h = redis.call('HMGET', sk, 'user', 'last', 'deadline', 'offline', 'started')
  local code
  if not h[1] then
    if state == 'ended' then
      -- A tombstone, so that a delayed earlier heartbeat cannot bring the session back.
      redis.call('HSET', sk, 'user', user, 'facility', fac, 'region', region, 'started', at,
        'last', at, 'deadline', at, 'offline', at, 'reason', 'ended')
      redis.call('ZADD', ENDED, at, member)
      code = 'x'
    elseif at + ttl <= now then
      code = 't'
    else
      go_online(member, sess, user, fac, region, at, at + ttl, now, true)
      code = 'n'
    end
  elseif h[1] ~= user then
    code = 'c'
  else
    local last, deadline = tonumber(h[2]), tonumber(h[3])
    local offline = h[4] and tonumber(h[4])
    if at < last or (at == last and state ~= 'ended') then
      code = 'o'
    elseif offline then
      if at <= offline or state == 'ended' then
        code = 'o'
      else
        code = restart(member, sess, user, fac, region, at)
      end
    elseif at > deadline then
      -- The session lapsed before this heartbeat and no sweep has claimed it yet: close the
      -- lapsed segment at its deadline, exactly as the sweeper would have.
      go_offline(member, sess, fac, region, deadline, 'expired', now)
      if state == 'ended' then
        code = 'e'
      else
        code = restart(member, sess, user, fac, region, at)
      end
    elseif state == 'ended' then
      -- one HSET (last with the offline fields), no second HMGET.
      go_offline(member, sess, fac, region, at, 'ended', now, { h[1], h[5] }, at)
      code = 'e'
    elseif at + ttl > deadline then
      -- last and deadline in one HSET.
      redis.call('HSET', sk, 'last', at, 'deadline', at + ttl)
      redis.call('ZADD', DEADLINES, at + ttl, member)
      code = 'r'
    else
      redis.call('HSET', sk, 'last', at)
      code = 'r'
    end
  end
  out[#out + 1] = code
end

return { table.concat(out), flips, new_epoch }
