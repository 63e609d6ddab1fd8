-- The booking gate: take ARGV[2] seats from window ARGV[1] only if that many remain.
-- KEYS[1]: slots:{office:date}, a hash of window start -> seats remaining.
-- Returns the seats remaining after the take (>= 0); -(remaining + 1) when too few remain
-- (nothing taken); 'missing' when the window is not in Redis (data lost: ask Postgres).
local rem = redis.call('HGET', KEYS[1], ARGV[1])
if not rem then
  return 'missing'
end
rem = tonumber(rem)
local n = tonumber(ARGV[2])
if rem < n then
  return -(rem + 1)
end
return redis.call('HINCRBY', KEYS[1], ARGV[1], -n)
