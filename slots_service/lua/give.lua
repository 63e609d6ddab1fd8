-- Compensation: give ARGV[2] seats back to window ARGV[1] of hash KEYS[1].
-- A window missing from Redis is left missing (the next reconcile fills it from Postgres),
-- so a restart between take and give cannot create a counter that only holds the give.
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  return -1
end
return redis.call('HINCRBY', KEYS[1], ARGV[1], tonumber(ARGV[2]))
