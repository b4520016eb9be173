--[[ rollup_collect.lua — read what the rollup must persist or re-publish for one partition.

KEYS[1]  P:deadlines (routing only; see lib.lua)
ARGV[1]  P, the partition prefix presence:{pN}
ARGV[2]  the most journal entries to read
ARGV[3]  the most dirty facilities to read
ARGV[4]  flips recorded before this time (ms) and still unpublished are returned for re-push

Reads only; rollup_commit.lua removes what was persisted. Its cost follows the number of
changes since the last rollup, never the number of sessions.

ARGV[5]  now, ms

Returns { journal, dirty, stale, reconcile, has_epoch } where journal is a list of JSON
strings, dirty and stale are lists of { facility, region, status, since_ms, version,
online_sessions, rev }, reconcile is 1 when this partition's epoch is past its hold and not yet
reconciled with DynamoDB (facilities persisted as online that Redis no longer knows must flip
offline), and has_epoch is 1 when the partition has an epoch (so the partition ledger must
know of one).
]]
local function state(fac)
  local h = redis.call('HMGET', key('f:' .. fac), 'region', 'status', 'since', 'version', 'rev')
  return { fac, h[1] or '', h[2] or 'offline', tonumber(h[3] or '0'), tonumber(h[4] or '0'),
    redis.call('SCARD', key('live:' .. fac)), tonumber(h[5] or '0') }
end
local journal = redis.call('LRANGE', key('journal'), 0, tonumber(ARGV[2]) - 1)
local dirty = {}
for _, fac in ipairs(redis.call('ZRANGE', key('dirty'), 0, tonumber(ARGV[3]) - 1)) do
  dirty[#dirty + 1] = state(fac)
end
local stale = {}
for _, fac in ipairs(redis.call('ZRANGEBYSCORE', key('unpublished'), '-inf', '(' .. ARGV[4],
  'LIMIT', 0, 1000)) do
  stale[#stale + 1] = state(fac)
end
local reconcile = 0
if redis.call('EXISTS', key('epoch')) == 1 and redis.call('EXISTS', key('reconciled')) == 0
  and tonumber(ARGV[5]) >= tonumber(redis.call('GET', key('hold_until')) or '0') then
  reconcile = 1
end
return { journal, dirty, stale, reconcile, redis.call('EXISTS', key('epoch')) }
