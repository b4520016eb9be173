--[[ sweep.lua — claim the sessions of one partition whose deadline has passed.

KEYS[1]  P:deadlines (routing only; see lib.lua)
ARGV[1]  P, the partition prefix presence:{pN}
ARGV[2]  now, ms since the epoch
ARGV[3]  the most sessions to claim in this call
ARGV[4]  how long offline flips are held after a data loss, ms (see lib.lua)

A claimed session goes offline at its deadline (not at `now`: the sweeper may be late, the
session was not). Claiming is atomic, so several sweepers at once never claim a session twice.

Returns { claimed, flips, next_deadline, new_epoch } where claimed is a flat list
{ member, deadline, ... }, flips is as in heartbeat.lua, next_deadline is the earliest
deadline still pending (-1 when none), and new_epoch is as in heartbeat.lua.
]]
local now = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
ensure_epoch(now, tonumber(ARGV[4]))
release_held(now)
local due = redis.call('ZRANGEBYSCORE', key('deadlines'), '-inf', '(' .. now,
  'WITHSCORES', 'LIMIT', 0, limit)
local claimed = {}
for i = 1, #due, 2 do
  local member, deadline = due[i], tonumber(due[i + 1])
  local h = redis.call('HMGET', key('s:' .. member), 'facility', 'region')
  if h[1] then
    go_offline(member, string.sub(member, #h[1] + 2), h[1], h[2], deadline, 'expired', now)
    claimed[#claimed + 1] = member
    claimed[#claimed + 1] = deadline
  else
    redis.call('ZREM', key('deadlines'), member)
  end
end
local nxt = redis.call('ZRANGE', key('deadlines'), 0, 0, 'WITHSCORES')
return { claimed, flips, tonumber(nxt[2] or '-1'), new_epoch }
