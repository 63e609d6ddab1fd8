-- Fixed-window rate limit. KEYS[1]: the counter. ARGV[1]: limit. ARGV[2]: window seconds.
-- Returns 0 when allowed, else the seconds until the window resets.
local n = redis.call('INCR', KEYS[1])
if n == 1 then
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[2]))
end
if n > tonumber(ARGV[1]) then
  local ttl = redis.call('TTL', KEYS[1])
  if ttl < 1 then ttl = 1 end
  return ttl
end
return 0
