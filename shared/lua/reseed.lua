--[[ reseed.lua — move a facility's version above the one DynamoDB holds.

KEYS[1]   P:deadlines (routing only; see lib.lua)
ARGV[1]   P, the partition prefix presence:{pN}
ARGV[2]   now, ms
ARGV[3..] pairs of facility_id, persisted version

After a data loss a facility's versions start again from 1, and every reader ignores them as
older than what it holds. For each listed facility whose version is not above the persisted
one, the current status is re-issued as a flip with version persisted + 1: it is journaled,
persisted and pushed like any flip, and versions grow from there.

Returns the flips, as heartbeat.lua does.
]]
local now = tonumber(ARGV[2])
for i = 3, #ARGV, 2 do
  local fac, stored = ARGV[i], tonumber(ARGV[i + 1])
  local fk = key('f:' .. fac)
  local h = redis.call('HMGET', fk, 'status', 'since', 'region', 'version')
  if h[1] and tonumber(h[4] or '0') <= stored then
    redis.call('HSET', fk, 'version', stored)
    flip(fac, h[3], h[1], tonumber(h[2]), now)
  end
end
return flips
