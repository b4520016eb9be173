--[[ PROTOTYPE (bench/proto): the floor of heartbeat.lua — the same arguments and reply shape,
the same loop, key building and number parsing, but no redis.call per heartbeat. What a
heartbeat costs Redis before the script touches any data. ]]
local P = ARGV[1]
local function key(s) return P .. ':' .. s end
local now = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local out = {}
for i = 5, #ARGV, 6 do
  local sess, user, fac, region = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local at, state = tonumber(ARGV[i + 4]), ARGV[i + 5]
  local member = fac .. '/' .. sess
  local sk = key('s:' .. member)
  if at + ttl > now and state == 'active' and sk ~= user and region then
    out[#out + 1] = 'r'
  else
    out[#out + 1] = 'e'
  end
end
return { table.concat(out), {} }
