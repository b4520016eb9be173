--[[ snapshot.lua — the live status of a region's facilities in one partition (read only).

KEYS[1]  P:deadlines (routing only; see lib.lua)
ARGV[1]  P, the partition prefix presence:{pN}
ARGV[2]  region id

Returns a list of { facility, region, status, since_ms, version, online_sessions }.
]]
local out = {}
for _, fac in ipairs(redis.call('SMEMBERS', key('region:' .. ARGV[2]))) do
  local h = redis.call('HMGET', key('f:' .. fac), 'status', 'since', 'version')
  if h[1] then
    out[#out + 1] = { fac, ARGV[2], h[1], tonumber(h[2] or '0'), tonumber(h[3] or '0'),
      redis.call('SCARD', key('live:' .. fac)) }
  end
end
return out
