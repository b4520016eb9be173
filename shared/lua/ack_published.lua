--[[ ack_published.lua — mark flips of one partition as pushed to clients.

KEYS[1]   P:deadlines (routing only; see lib.lua)
ARGV[1]   P, the partition prefix presence:{pN}
ARGV[2..] pairs of facility_id, version that were published

A facility leaves the unpublished set only if no newer flip happened since: that newer flip
is still owed to clients.

Returns the number of facilities acknowledged.
]]
local n = 0
for i = 2, #ARGV, 2 do
  local fac, version = ARGV[i], tonumber(ARGV[i + 1])
  local current = tonumber(redis.call('HGET', key('f:' .. fac), 'version') or '0')
  if current <= version and redis.call('ZREM', key('unpublished'), fac) == 1 then
    n = n + 1
  end
end
return n
