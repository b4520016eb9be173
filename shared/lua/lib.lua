--[[ lib.lua — helpers prepended to every session script (not a script of its own).

Every script is called with KEYS[1] = one key of the partition (its deadline index), which
routes the call in a Redis Cluster, and ARGV[1] = the partition's key prefix `presence:{pN}`.
All other keys are built from that prefix, so they share its hash tag and the script touches
exactly one slot.

Keys under the prefix P:
  P:deadlines          ZSET  "<facility>/<session>" -> deadline ms (live sessions only)
  P:ended              ZSET  "<facility>/<session>" -> offline-at ms (offline sessions kept for dedupe)
  P:s:<fac>/<session>  HASH  user facility region started last deadline [offline reason]
  P:live:<fac>         SET   session ids of the facility's live sessions
  P:f:<fac>            HASH  status since version region rev
  P:region:<region>    SET   facility ids seen in the region (live snapshot)
  P:journal            LIST  JSON flips and finished segments not yet persisted (rollup drains it)
  P:dirty              ZSET  facility -> rev, facilities whose status or count is not yet persisted
  P:unpublished        ZSET  facility -> flip time ms, flips not yet pushed to clients
  P:epoch              STRING when this partition's data began (ms); missing = new or lost data
  P:hold_until         STRING offline flips are held until this time (ms) after a loss
  P:held               SET   facilities whose offline flip is held
  P:reconciled         STRING set once the rollup reconciled this epoch with DynamoDB
]]
local P = ARGV[1]
local function key(s) return P .. ':' .. s end
-- keys used per heartbeat are built once per call.
local DEADLINES, ENDED = key('deadlines'), key('ended')
local flips = {}

-- A facility changed (count or status): its rev grows and the rollup will persist it.
local function mark_dirty(fac)
  local rev = redis.call('HINCRBY', key('f:' .. fac), 'rev', 1)
  redis.call('ZADD', key('dirty'), rev, fac)
end

-- Record a flip atomically with the change that caused it: bump the version, journal it for
-- history, and remember it as unpublished until the caller acknowledges the push.
local function flip(fac, region, status, since, now)
  local fk = key('f:' .. fac)
  local version = redis.call('HINCRBY', fk, 'version', 1)
  redis.call('HSET', fk, 'status', status, 'since', since, 'region', region)
  mark_dirty(fac)
  local n = redis.call('SCARD', key('live:' .. fac))
  redis.call('RPUSH', key('journal'), cjson.encode({
    kind = 'flip', facility_id = fac, region = region, status = status,
    since_ms = since, version = version, online_sessions = n }))
  redis.call('ZADD', key('unpublished'), now, fac)
  flips[#flips + 1] = { fac, region, status, since, version, n }
end

-- A partition without an epoch is new or lost its data (restart without persistence,
-- failover, FLUSHALL). Redis alone cannot tell which, so the epoch starts as if data was
-- lost: sessions will come back with their next heartbeats, so offline flips are held for
-- `hold_ms` rather than shown for facilities that are in fact still online. The script that
-- started the epoch says so (`new_epoch`); its caller asks the partition ledger (DynamoDB)
-- whether the partition ever had an epoch, and lifts the hold at once when it had none
-- (settle_epoch.lua): a first start is not a loss. See docs/architecture.md, "Redis data loss".
local new_epoch = 0
local function ensure_epoch(now, hold_ms)
  if redis.call('EXISTS', key('epoch')) == 0 then
    redis.call('SET', key('epoch'), now)
    new_epoch = 1
    if hold_ms > 0 then
      redis.call('SET', key('hold_until'), now + hold_ms)
    end
  end
end

local function holding(now)
  return now < tonumber(redis.call('GET', key('hold_until')) or '0')
end

-- After the hold, the held facilities that still have no live session flip offline, as of
-- the end of the hold.
local function release_held(now)
  if redis.call('SCARD', key('held')) == 0 or holding(now) then
    return
  end
  local since = tonumber(redis.call('GET', key('hold_until')) or now)
  for _, fac in ipairs(redis.call('SMEMBERS', key('held'))) do
    local fk = key('f:' .. fac)
    if redis.call('SCARD', key('live:' .. fac)) == 0 and redis.call('HGET', fk, 'status') == 'online' then
      flip(fac, redis.call('HGET', fk, 'region'), 'offline', since, now)
    end
  end
  redis.call('DEL', key('held'))
end

-- Start an online segment for a session (new, or back after being offline).
-- `fresh` (no hash existed) skips clearing fields and the ended entry it cannot have.
local function go_online(member, sess, user, fac, region, at, deadline, now, fresh)
  local sk = key('s:' .. member)
  redis.call('HSET', sk, 'user', user, 'facility', fac, 'region', region,
    'started', at, 'last', at, 'deadline', deadline)
  if not fresh then
    redis.call('HDEL', sk, 'offline', 'reason')
    redis.call('ZREM', ENDED, member)
  end
  redis.call('ZADD', DEADLINES, deadline, member)
  redis.call('SADD', key('region:' .. region), fac)
  if redis.call('SADD', key('live:' .. fac), sess) == 1 then
    mark_dirty(fac)
    if redis.call('HGET', key('f:' .. fac), 'status') ~= 'online' then
      flip(fac, region, 'online', at, now)
    end
  end
end

-- End a session's online segment at `at` (its own end, or its deadline when it expired).
-- a caller that already read user and started passes them (`known`), and `last` is
-- written in the same HSET.
local function go_offline(member, sess, fac, region, at, reason, now, known, last)
  local sk = key('s:' .. member)
  local h = known or redis.call('HMGET', sk, 'user', 'started')
  if last then
    redis.call('HSET', sk, 'offline', at, 'reason', reason, 'deadline', at, 'last', last)
  else
    redis.call('HSET', sk, 'offline', at, 'reason', reason, 'deadline', at)
  end
  redis.call('ZREM', DEADLINES, member)
  redis.call('ZADD', ENDED, at, member)
  redis.call('RPUSH', key('journal'), cjson.encode({
    kind = 'segment', session_id = sess, user_id = h[1], facility_id = fac, region = region,
    start_ms = tonumber(h[2]), end_ms = at, reason = reason }))
  if redis.call('SREM', key('live:' .. fac), sess) == 1 then
    mark_dirty(fac)
    if redis.call('SCARD', key('live:' .. fac)) == 0
      and redis.call('HGET', key('f:' .. fac), 'status') == 'online' then
      if holding(now) then
        redis.call('SADD', key('held'), fac)
      else
        flip(fac, region, 'offline', at, now)
      end
    end
  end
end

-- An offline session heartbeating again: too late to count ('t'), or a new online segment.
local function restart(member, sess, user, fac, region, at, now, ttl)
  if at + ttl <= now then
    return 't'
  end
  go_online(member, sess, user, fac, region, at, at + ttl, now)
  return 's'
end

-- Applies one heartbeat (state 'active' or 'ended') received at `at`; returns its outcome
-- code (see heartbeat.lua). SQS delivers at least once and out of order, so it is judged
-- against what is stored: a deadline only moves forward, and a heartbeat older than the
-- session's last one changes nothing.
local function apply_heartbeat(sess, user, fac, region, at, state, now, ttl)
  local member = fac .. '/' .. sess
  local sk = key('s:' .. member)
  -- `started` read here too, so an end needs no second read.
  local h = redis.call('HMGET', sk, 'user', 'last', 'deadline', 'offline', 'started')
  if not h[1] then
    if state == 'ended' then
      -- A tombstone, so that a delayed earlier heartbeat cannot bring the session back.
      redis.call('HSET', sk, 'user', user, 'facility', fac, 'region', region, 'started', at,
        'last', at, 'deadline', at, 'offline', at, 'reason', 'ended')
      redis.call('ZADD', ENDED, at, member)
      return 'x'
    elseif at + ttl <= now then
      return 't'
    end
    go_online(member, sess, user, fac, region, at, at + ttl, now, true)
    return 'n'
  elseif h[1] ~= user then
    return 'c'
  end
  local last, deadline = tonumber(h[2]), tonumber(h[3])
  local offline = h[4] and tonumber(h[4])
  if at < last or (at == last and state ~= 'ended') then
    return 'o'
  elseif offline then
    if at <= offline or state == 'ended' then
      return 'o'
    end
    return restart(member, sess, user, fac, region, at, now, ttl)
  elseif at > deadline then
    -- The session lapsed before this heartbeat and no sweep has claimed it yet: close the
    -- lapsed segment at its deadline, exactly as the sweeper would have.
    go_offline(member, sess, fac, region, deadline, 'expired', now)
    if state == 'ended' then
      return 'e'
    end
    return restart(member, sess, user, fac, region, at, now, ttl)
  elseif state == 'ended' then
    -- one HSET (last with the offline fields), no second HMGET.
    go_offline(member, sess, fac, region, at, 'ended', now, { h[1], h[5] }, at)
    return 'e'
  elseif at + ttl > deadline then
    -- last and deadline in one HSET.
    redis.call('HSET', sk, 'last', at, 'deadline', at + ttl)
    redis.call('ZADD', DEADLINES, at + ttl, member)
    return 'r'
  end
  redis.call('HSET', sk, 'last', at)
  return 'r'
end
