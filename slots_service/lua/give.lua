-- Give ARGV[2] seats back to window ARGV[1] of hash KEYS[1] (negative: take seats that Postgres
-- already gave away, e.g. to the waitlist, after its commit).
-- A window missing from Redis is left missing (the next reconcile fills it from Postgres),
-- so a restart between take and give cannot create a counter that only holds the give.
-- A counter never goes below 0: a public take that landed between a commit and this call was
-- refused by Postgres and kept, and already brought the counter down to the truth.
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  return -1
end
local left = redis.call('HINCRBY', KEYS[1], ARGV[1], tonumber(ARGV[2]))
if left < 0 then
  redis.call('HSET', KEYS[1], ARGV[1], 0)
  return 0
end
return left
