-- The booking gate: take ARGV[2] seats from window ARGV[1] only if that many remain.
-- KEYS[1]: slots:{office:date}, a hash of window start -> seats remaining.
-- KEYS[2]: the person's attempt counter for that office-day (same hash tag, same slot);
--          ARGV[3]: attempts allowed per ARGV[4] seconds (0: no limit).
-- Returns the seats remaining after the take (>= 0); -(remaining + 1) when too few remain
-- (nothing taken); 'missing' when the window is not in Redis (data lost: ask Postgres);
-- 'nowindow' when the day is counted but has no such window (Postgres will refuse it);
-- 'rate:<seconds>' when the person made too many attempts (nothing taken).
-- KEYS[3] (only for a request with an Idempotency-Key): the key's mark on that office-day
--          (same hash tag), living ARGV[5] seconds (Redis's own clock: a duration). The first
--          request of a key sets it; a later one finds it and gets 'dup' (nothing taken): the
--          key's first request passed the gate, and what the key answers decides. So a key's
--          duplicates never take the seats its own booking needs (ten at once of a window of
--          three: three took them, seven were refused as full, and a refusal kept for the key
--          could answer all ten). The attempt counts first: a duplicate is an attempt too.
local limit = tonumber(ARGV[3])
if limit > 0 then
  local n = redis.call('INCR', KEYS[2])
  if n == 1 then
    redis.call('EXPIRE', KEYS[2], tonumber(ARGV[4]))
  end
  if n > limit then
    local ttl = redis.call('TTL', KEYS[2])
    if ttl < 1 then ttl = 1 end
    return 'rate:' .. ttl
  end
end
if KEYS[3] and not redis.call('SET', KEYS[3], '1', 'NX', 'EX', tonumber(ARGV[5])) then
  return 'dup'
end
local rem = redis.call('HGET', KEYS[1], ARGV[1])
if not rem then
  if redis.call('EXISTS', KEYS[1]) == 1 then
    return 'nowindow'
  end
  return 'missing'
end
rem = tonumber(rem)
local n = tonumber(ARGV[2])
if rem < n then
  return -(rem + 1)
end
return redis.call('HINCRBY', KEYS[1], ARGV[1], -n)
