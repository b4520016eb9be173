--[[ reconcile.lua — after a data loss, align Redis with what DynamoDB last persisted.

KEYS[1]   P:deadlines (routing only; see lib.lua)
ARGV[1]   P, the partition prefix presence:{pN}
ARGV[2]   now, ms
ARGV[3..] triples of facility_id, region, version: facilities of this partition that
          DynamoDB holds as online (version = the persisted one)

A listed facility with no live session here flips offline (its sessions did not come back
within the hold), with a version above the persisted one so clients and the DynamoDB writer
accept it. Marks the epoch reconciled.

Returns the flips, as heartbeat.lua does.
]]
local now = tonumber(ARGV[2])
for i = 3, #ARGV, 3 do
  local fac, region, stored = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local fk = key('f:' .. fac)
  if redis.call('SCARD', key('live:' .. fac)) == 0 and redis.call('HGET', fk, 'status') ~= 'offline' then
    local current = tonumber(redis.call('HGET', fk, 'version') or '0')
    if current < stored then
      redis.call('HSET', fk, 'version', stored)
    end
    flip(fac, region, 'offline', now, now)
  end
end
redis.call('SET', key('reconciled'), now)
return flips
