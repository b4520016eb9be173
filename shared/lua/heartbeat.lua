--[[ heartbeat.lua — apply a batch of heartbeats to one partition, atomically.

KEYS[1]   P:deadlines (routing only; see lib.lua)
ARGV[1]   P, the partition prefix presence:{pN}
ARGV[2]   now, ms since the epoch (the caller's clock: time is an argument)
ARGV[3]   session TTL, ms
ARGV[4]   how long offline flips are held after a data loss, ms (see lib.lua)
ARGV[5..] heartbeats, 6 fields each, in order of receive time:
          session_id, user_id, facility_id, region, at_ms, state ("active" | "ended")

SQS delivers at least once and out of order, so every heartbeat is judged against what is
stored: a deadline only moves forward, and a heartbeat older than the session's last one
changes nothing.

Returns { outcomes, flips, new_epoch } where outcomes has one character per heartbeat:
  n new session        r refreshed         e ended             s new online segment
  o old or duplicate   t too late to count c user conflict     x end of an unknown session
flips is a list of { facility, region, status, since_ms, version, online_sessions }, and
new_epoch is 1 when this call started the partition's epoch (see lib.lua).
]]
local now = tonumber(ARGV[2])
local ttl = tonumber(ARGV[3])
local out = {}

ensure_epoch(now, tonumber(ARGV[4]))
release_held(now)

for i = 5, #ARGV, 6 do
  out[#out + 1] = apply_heartbeat(ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3],
    tonumber(ARGV[i + 4]), ARGV[i + 5], now, ttl)
end

return { table.concat(out), flips, new_epoch }
