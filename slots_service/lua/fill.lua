-- Write the seats remaining of a day's windows, as Postgres knows them.
-- KEYS[1]: slots:{office:date}. ARGV[1]: seconds the key lives from Redis's own now (a
-- duration, so Redis's clock enforces it; see horizon.counters_ttl).
-- ARGV[2]: 'replace' (overwrite every window, reconcile) or 'missing' (only absent ones).
-- ARGV[3..]: window start, seats remaining, pairs.
-- Returns how many windows were absent or held another value.
local changed = 0
for i = 3, #ARGV, 2 do
  local cur = redis.call('HGET', KEYS[1], ARGV[i])
  if not cur then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    changed = changed + 1
  elseif ARGV[2] == 'replace' and cur ~= ARGV[i + 1] then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    changed = changed + 1
  end
end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
return changed
