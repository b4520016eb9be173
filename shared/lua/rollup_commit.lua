--[[ rollup_commit.lua — forget what the rollup persisted, and drop old offline sessions.

KEYS[1]   P:deadlines (routing only; see lib.lua)
ARGV[1]   P, the partition prefix presence:{pN}
ARGV[2]   number of journal entries persisted (the head of the journal)
ARGV[3]   offline sessions that ended before this time (ms) are deleted
ARGV[4]   the most offline sessions to delete in this call
ARGV[5..] pairs of facility_id, rev that were persisted

A facility stays dirty if it changed again after it was read (its rev grew). An offline
session is kept for one TTL after it ended so that a late heartbeat older than its end is
still recognised as old; after that, any such heartbeat is too late to count anyway.

Returns { facilities_cleaned, sessions_deleted }.
]]
redis.call('LTRIM', key('journal'), tonumber(ARGV[2]), -1)
local cleaned = 0
for i = 5, #ARGV, 2 do
  local fac, rev = ARGV[i], tonumber(ARGV[i + 1])
  local current = tonumber(redis.call('ZSCORE', key('dirty'), fac) or '-1')
  if current >= 0 and current <= rev then
    redis.call('ZREM', key('dirty'), fac)
    cleaned = cleaned + 1
  end
end
local deleted = 0
local old = redis.call('ZRANGEBYSCORE', key('ended'), '-inf', '(' .. ARGV[3],
  'LIMIT', 0, tonumber(ARGV[4]))
for _, member in ipairs(old) do
  local sk = key('s:' .. member)
  if redis.call('HEXISTS', sk, 'offline') == 1 then
    redis.call('DEL', sk)
    deleted = deleted + 1
  end
  redis.call('ZREM', key('ended'), member)
end
return { cleaned, deleted }
