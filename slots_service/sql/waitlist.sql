-- The waitlist (API 1.1). Loaded with queries.sql (db.py).

-- name: waitlist_insert
INSERT INTO waitlist (id, office_id, service_id, from_day, to_day, party_size, id_hmac,
    id_type, id_masked, name, phone_hmac, members, channel, reference, metadata,
    notice_accepted, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
RETURNING *

-- name: waitlist_identities_insert
INSERT INTO waitlist_identities (service_id, id_hmac, waitlist_id)
SELECT $1, h, $2 FROM unnest($3::bytea[]) AS h

-- name: waitlist_of_identities
-- The waiting entry any of these identities ($2) holds for a service.
SELECT waitlist_id FROM waitlist_identities
WHERE service_id = $1 AND id_hmac = ANY($2::bytea[])
ORDER BY waitlist_id LIMIT 1

-- name: waitlist_by_id
SELECT * FROM waitlist WHERE id = $1

-- name: waitlist_lock
SELECT * FROM waitlist WHERE id = $1 FOR UPDATE

-- name: waitlist_next
-- The oldest waiting entry after seq $4 of office $1 that covers day $2 and fits $3 seats,
-- locked to the commit (a concurrent offer waits, then skips it once booked).
SELECT * FROM waitlist
WHERE office_id = $1 AND status = 'waiting' AND from_day <= $2 AND to_day >= $2
    AND party_size <= $3 AND seq > $4
ORDER BY seq LIMIT 1 FOR UPDATE

-- name: waitlist_booked
WITH gone AS (DELETE FROM waitlist_identities WHERE waitlist_id = $1)
UPDATE waitlist SET status = 'booked', booking_id = $2, ended_at = $3
WHERE id = $1 RETURNING *

-- name: waitlist_end
-- Cancelled ($2) or expired: the entry leaves `waiting`, its identities may wait again.
WITH gone AS (DELETE FROM waitlist_identities WHERE waitlist_id = $1)
UPDATE waitlist SET status = $2, ended_at = $3 WHERE id = $1 AND status = 'waiting'
RETURNING *

-- name: waitlist_due_to_expire
SELECT id FROM waitlist WHERE office_id = $1 AND status = 'waiting' AND to_day < $2
ORDER BY seq LIMIT $3 FOR UPDATE SKIP LOCKED

-- name: windows_with_seats
-- Windows of an office from day $2 to $3 with $4 seats free, not closed, not started ($5).
SELECT day, start_time FROM windows
WHERE office_id = $1 AND day BETWEEN $2 AND $3 AND NOT closed AND starts_at > $5
    AND capacity - booked >= $4
ORDER BY day, start_time

-- name: purge_waitlist
DELETE FROM waitlist WHERE to_day < $1 AND status <> 'waiting'
