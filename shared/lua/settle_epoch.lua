--[[ settle_epoch.lua — a partition's new epoch turned out to be its first: lift the hold.

KEYS[1]  P:deadlines (routing only; see lib.lua)
ARGV[1]  P, the partition prefix presence:{pN}
ARGV[2]  now, ms

Called once, by the caller whose script started the epoch, after the partition ledger said
the partition never had an epoch before (a fresh deployment or a fresh Redis, not a loss).
Nothing was ever persisted or shown for it, so there is nothing to hold and nothing to
reconcile: the hold ends now, facilities held meanwhile flip offline now, and the epoch is
marked reconciled so the rollup neither reconciles it nor asks clients to resync.

Returns the flips, as heartbeat.lua does.
]]
local now = tonumber(ARGV[2])
if redis.call('EXISTS', key('epoch')) == 1 then
  redis.call('SET', key('hold_until'), now)
  redis.call('SET', key('reconciled'), now)
  release_held(now)
end
return flips
