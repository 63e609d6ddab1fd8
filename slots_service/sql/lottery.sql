-- Fair release by lottery (API 1.1): release records, entries, the draw. Loaded with
-- queries.sql (db.py).

-- name: release_make
-- The release record of an office-day, made once: the seed ($5) and its SHA-256 ($6) are only
-- kept by the first caller.
INSERT INTO releases (office_id, day, entries_open_at, draw_at, seed, commitment)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (office_id, day) DO NOTHING

-- name: release_get
SELECT office_id, day, entries_open_at, draw_at, seed, commitment, drawn_at, entries, won, lost,
    (SELECT count(*)::int FROM entries e
     WHERE e.office_id = r.office_id AND e.day = r.day AND e.status = 'entered') AS entered
FROM releases r WHERE office_id = $1 AND day = $2

-- name: release_lock
SELECT seed, drawn_at FROM releases WHERE office_id = $1 AND day = $2 FOR UPDATE

-- name: release_share
-- An entry's hold on the record (to its commit): the draw's FOR UPDATE waits for it.
SELECT drawn_at FROM releases WHERE office_id = $1 AND day = $2 FOR SHARE

-- name: release_drawn_days
SELECT day FROM releases
WHERE office_id = $1 AND day BETWEEN $2 AND $3 AND drawn_at IS NOT NULL

-- name: release_done
UPDATE releases SET drawn_at = $3, entries = $4, won = $5, lost = $6
WHERE office_id = $1 AND day = $2

-- name: day_windows
-- An office-day's windows in start order, for entries' choices and the draw.
SELECT id, to_char(start_time, 'HH24:MI') AS start, start_time, starts_at, capacity, booked,
    closed
FROM windows WHERE office_id = $1 AND day = $2 ORDER BY start_time

-- name: entry_insert
INSERT INTO entries (id, office_id, service_id, day, choices, party_size, id_hmac, id_type,
    id_masked, name, phone_hmac, members, channel, reference, metadata, notice_accepted,
    waitlist, created_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)

-- name: entry_identities_insert
INSERT INTO entry_identities (office_id, day, id_hmac, entry_id)
SELECT $1, $2, h, $3 FROM unnest($4::bytea[]) AS h

-- name: entry_of_identities
-- The entry any of these identities ($3) holds in the draw of an office-day.
SELECT entry_id FROM entry_identities
WHERE office_id = $1 AND day = $2 AND id_hmac = ANY($3::bytea[])
ORDER BY entry_id LIMIT 1

-- name: entry_by_id
SELECT e.*, r.draw_at FROM entries e JOIN releases r ON r.office_id = e.office_id AND r.day = e.day
WHERE e.id = $1

-- name: entry_lock
SELECT status FROM entries WHERE id = $1 FOR UPDATE

-- name: entry_withdraw
WITH gone AS (DELETE FROM entry_identities WHERE entry_id = $1)
UPDATE entries SET status = 'withdrawn' WHERE id = $1 AND status = 'entered'

-- name: entries_to_draw
SELECT * FROM entries WHERE office_id = $1 AND day = $2 AND status = 'entered'
ORDER BY id FOR UPDATE

-- name: entry_drawn
UPDATE entries SET rank = $2, status = $3, won_start = $4, booking_id = $5, lost_reason = $6,
    waitlist_id = $7
WHERE id = $1
RETURNING *

-- name: draw_page
SELECT rank, id, status, won_start FROM entries
WHERE office_id = $1 AND day = $2 AND rank > $3 ORDER BY rank LIMIT $4

-- name: phone_owner
-- Another identity already holds this phone number.
SELECT EXISTS (SELECT FROM people WHERE phone_hmac = $1 AND id_hmac <> $2)

-- name: purge_entries
-- Entries, then their release records (the count is of entries).
WITH records AS (DELETE FROM releases WHERE day < $1)
DELETE FROM entries WHERE day < $1
