--[[ members.lua — the grace before a member is announced offline (member.offline).

A standalone script (lib.lua is not prepended). KEYS[1] is the sorted set
presence:{members}:gone of users whose last connection went, scored by when the grace ends.

ARGV[1] the operation:
  gone  ARGV[2] user, ARGV[3] due (ms)  the user's last device went: announce at `due`
  back  ARGV[2] user                    a device of the user connected: returns 1 when the
                                        user was within the grace (a reconnect: no noise)
  due   ARGV[2] now (ms), ARGV[3] limit claims users whose grace ended: a flat list
                                        { user, due, ... }, removed from the set
]]
local op = ARGV[1]
if op == 'gone' then
  redis.call('ZADD', KEYS[1], tonumber(ARGV[3]), ARGV[2])
  return 1
elseif op == 'back' then
  return redis.call('ZREM', KEYS[1], ARGV[2])
elseif op == 'due' then
  local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[2], 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[3]))
  for i = 1, #due, 2 do
    redis.call('ZREM', KEYS[1], due[i])
  end
  return due
end
return redis.error_reply('members.lua: unknown operation ' .. tostring(op))
