-- Every query of the service, by name (`-- name: x`), parsed once at import by db.py; a
-- `-- fragment: x` is a piece of SQL that queries include as {x}.

-- fragment: booking_rows
-- A booking as the API shows it: its row with its window's day and times and its party's
-- members (render.booking). Queries name it as {booking_rows}.
SELECT b.*, w.day, w.start_time, w.end_time, w.starts_at, w.ends_at,
    (SELECT coalesce(jsonb_agg(jsonb_build_object('id_type', m.id_type,
                'id_number_masked', m.id_masked, 'name', m.name) ORDER BY m.position), '[]')
     FROM booking_members m WHERE m.booking_id = b.id) AS members
FROM bookings b JOIN windows w ON w.id = b.window_id

-- ---------------------------------------------------------------- catalog

-- name: all_offices
SELECT id, name, timezone, services, window_minutes, hours, release, lottery_since
FROM offices ORDER BY id

-- name: all_services
SELECT id, name, cancel_cutoff, max_party_size, requires_reference, notice, documents,
    notice_required
FROM services ORDER BY id

-- name: service_ids
SELECT id FROM services WHERE id = ANY($1::text[])

-- name: upsert_service
INSERT INTO services (id, name, cancel_cutoff, max_party_size, requires_reference, updated_at,
    notice, documents, notice_required)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, cancel_cutoff = EXCLUDED.cancel_cutoff,
    max_party_size = EXCLUDED.max_party_size, requires_reference = EXCLUDED.requires_reference,
    updated_at = EXCLUDED.updated_at, notice = EXCLUDED.notice, documents = EXCLUDED.documents,
    notice_required = EXCLUDED.notice_required

-- name: upsert_office
-- $8 release; lottery_since: when the office (last) went into lottery mode ($7 now), kept
-- while it stays there, NULL out of it.
INSERT INTO offices (id, name, timezone, services, window_minutes, hours, updated_at, release,
    lottery_since)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8,
    CASE WHEN $8::jsonb->>'mode' = 'lottery' THEN $7::timestamptz END)
ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, timezone = EXCLUDED.timezone,
    services = EXCLUDED.services, window_minutes = EXCLUDED.window_minutes,
    hours = EXCLUDED.hours, updated_at = EXCLUDED.updated_at, release = EXCLUDED.release,
    lottery_since = CASE WHEN EXCLUDED.release->>'mode' = 'lottery'
        THEN coalesce(offices.lottery_since, EXCLUDED.lottery_since) END

-- name: catalog_changed
-- In the transaction of a catalog write: the next version, announced at commit.
WITH v AS (UPDATE catalog_version SET version = version + 1 RETURNING version)
SELECT version, pg_notify('slots_catalog', version::text) FROM v

-- name: catalog_version
SELECT version FROM catalog_version

-- name: catalog_reader_seen
INSERT INTO catalog_readers (reader, version, seen_at) VALUES ($1, $2, clock_timestamp())
ON CONFLICT (reader) DO UPDATE SET version = EXCLUDED.version, seen_at = EXCLUDED.seen_at

-- name: catalog_readers_behind
-- Live copies (heard from within $2 seconds of Postgres's clock) older than version $1.
SELECT count(*) FROM catalog_readers
WHERE version < $1 AND seen_at > clock_timestamp() - make_interval(secs => $2)

-- name: catalog_reader_gone
DELETE FROM catalog_readers WHERE reader = $1 OR seen_at < clock_timestamp() - interval '1 hour'

-- ---------------------------------------------------------------- calendar, horizon

-- name: calendar_mark
SELECT kind, as_weekday, name FROM calendar_days WHERE day = $1

-- name: calendar_all
SELECT day, kind, as_weekday, name FROM calendar_days ORDER BY day

-- name: calendar_put
INSERT INTO calendar_days (day, kind, as_weekday, name) VALUES ($1, $2, $3, $4)
ON CONFLICT (day) DO UPDATE SET kind = EXCLUDED.kind, as_weekday = EXCLUDED.as_weekday,
    name = EXCLUDED.name

-- name: calendar_delete
DELETE FROM calendar_days WHERE day = $1 RETURNING day

-- name: mark_day_opened
INSERT INTO opened_days (office_id, day, opened_at) VALUES ($1, $2, $3)
ON CONFLICT DO NOTHING RETURNING true

-- name: set_planned_as
UPDATE opened_days SET planned_as = $3 WHERE office_id = $1 AND day = $2

-- name: planned_as
SELECT planned_as FROM opened_days WHERE office_id = $1 AND day = $2

-- name: day_has_windows
SELECT EXISTS (SELECT FROM windows WHERE office_id = $1 AND day = $2)

-- name: day_is_opened
SELECT EXISTS (SELECT FROM opened_days WHERE office_id = $1 AND day = $2)

-- name: closure_exists
SELECT EXISTS (SELECT FROM closures WHERE office_id = $1 AND day = $2)

-- name: insert_window
INSERT INTO windows (office_id, day, start_time, end_time, starts_at, ends_at, capacity, closed)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
ON CONFLICT ON CONSTRAINT windows_office_day_start DO NOTHING

-- name: opened_offices_on
SELECT DISTINCT office_id FROM opened_days WHERE day = $1

-- name: set_day_closed
-- Windows of one office-day open or closed, as its closure and the calendar say now.
UPDATE windows w SET closed = $3
WHERE w.office_id = $1 AND w.day = $2 AND w.closed IS DISTINCT FROM $3
RETURNING w.id

-- name: closure_put
INSERT INTO closures (office_id, day, reason, created_at) VALUES ($1, $2, $3, $4)
ON CONFLICT (office_id, day) DO UPDATE SET reason = EXCLUDED.reason

-- name: closure_delete
DELETE FROM closures WHERE office_id = $1 AND day = $2 RETURNING day

-- name: booked_on_day
-- Bookings still `booked` on an office-day, locked for cancellation.
{booking_rows}
WHERE w.office_id = $1 AND w.day = $2 AND b.status = 'booked'
ORDER BY b.id FOR UPDATE OF b

-- name: set_capacity
-- Lowering below the seats sold cancels nobody: the excess is carried in over_capacity.
UPDATE windows SET capacity = $4, over_capacity = GREATEST(0, booked - $4)
WHERE office_id = $1 AND day = $2 AND start_time = $3
RETURNING id, capacity, booked, closed, start_time, end_time

-- name: availability
SELECT w.day, w.start_time, w.end_time, w.capacity, GREATEST(0, w.capacity - w.booked) AS remaining
FROM windows w
WHERE w.office_id = $1 AND w.day BETWEEN $2 AND $3 AND NOT w.closed AND w.starts_at > $4
ORDER BY w.day, w.start_time

-- name: availability_by_day
SELECT w.office_id, w.day, sum(GREATEST(0, w.capacity - w.booked))::int AS remaining
FROM windows w
WHERE w.office_id = ANY($1::text[]) AND w.day BETWEEN $2 AND $3 AND NOT w.closed
    AND w.starts_at > $4
GROUP BY w.office_id, w.day
ORDER BY w.office_id, w.day

-- name: day_remaining
SELECT to_char(start_time, 'HH24:MI') AS start, GREATEST(0, capacity - booked) AS remaining
FROM windows WHERE office_id = $1 AND day = $2

-- name: window_at
SELECT id, start_time, end_time, starts_at, ends_at, capacity, booked, closed
FROM windows WHERE office_id = $1 AND day = $2 AND start_time = $3

-- name: release_drawn
SELECT EXISTS (SELECT FROM releases WHERE office_id = $1 AND day = $2 AND drawn_at IS NOT NULL)

-- name: open_days_from
-- Every opened office-day from a date on, for reconcile.
SELECT DISTINCT office_id, day FROM windows WHERE day >= $1 ORDER BY office_id, day

-- ---------------------------------------------------------------- the booking path

-- name: book
-- The bookings of a batch (group_commit.py), or one booking alone, in one statement: read the
-- rules' inputs of each, then take the seats, bind the people, insert the bookings, their
-- events and idempotent responses, all or nothing. One statement for the whole batch: its
-- executor is set up once, not once per booking (it was half of what a booking cost Postgres).
-- Parameter: $1, an array of JSON objects, one per booking (book_params.py: BookParams' names,
-- a test checks them against the record below; bytes in base64). An array, not one document:
-- the planner knows an array's `unnest` is a few rows (a recordset is 100 to it, and its plan
-- then scans whole tables).
--   office_id day start_time end_time party_size: the window and the seats asked for
--   id_hmac id_type id_masked phone_hmac (null: phones not bound) name: the person
--   booking_id service_id channel reference metadata: the booking
--   made_on (office-local today) bookings_per_day active_per_service now cancel_deadline
--   event_payload (the event's JSON object)
--   api_key_hash idempotency_key response claim_token (null: no key)
--   rebook_cooldown (minutes after the person's own cancellation of the service; 0: off)
--   notice_accepted (the person accepted the service's notice)
-- The bookings of one statement are of distinct people and distinct phones (group_commit.py
-- keeps them so): each one's rules read only what other transactions committed.
-- Its windows are locked first, in one order (office, day, start), and read as locked (their
-- newest versions): the seats a window still has are shared among the batch's bookings of it
-- in their order, each taking its party's seats while they last. A booking whose party would
-- still fit after the ones before it took theirs, but after a bigger one did not, is answered
-- `alone`: decided again alone, as it would have been, one after the other.
-- One row per booking, in their order (`ord`).
WITH r AS MATERIALIZED (
    SELECT office_id, day, start_time, end_time, party_size,
        decode(id_hmac, 'base64') AS id_hmac, id_type, id_masked,
        decode(phone_hmac, 'base64') AS phone_hmac, booking_id, service_id, name, channel,
        reference, metadata, made_on, bookings_per_day, active_per_service, now,
        cancel_deadline, event_payload, decode(api_key_hash, 'base64') AS api_key_hash,
        idempotency_key, decode(response, 'base64') AS response,
        decode(claim_token, 'base64') AS claim_token, rebook_cooldown, notice_accepted,
        ordinality AS ord
    FROM unnest($1::jsonb[]) WITH ORDINALITY AS j(booking, ordinality)
    CROSS JOIN LATERAL jsonb_to_record(j.booking) AS (office_id text, day date,
        start_time time, end_time time, party_size int, id_hmac text, id_type text,
        id_masked text, phone_hmac text, booking_id text, service_id text, name text,
        channel text, reference text, metadata jsonb, made_on date, bookings_per_day int,
        active_per_service int, now timestamptz, cancel_deadline timestamptz,
        event_payload jsonb, api_key_hash text, idempotency_key text, response text,
        claim_token text, rebook_cooldown int, notice_accepted bool)
), w AS MATERIALIZED (
    -- each booking's window looked up by its index, one look-up per booking whatever the
    -- planner estimates of r (no scan of every window), then all locked in one order
    SELECT id, office_id, day, start_time, end_time, capacity, booked, closed FROM windows
    WHERE id = ANY (ARRAY(SELECT x.id FROM r CROSS JOIN LATERAL (SELECT id FROM windows x
        WHERE (x.office_id, x.day, x.start_time, x.end_time)
            = (r.office_id, r.day, r.start_time, r.end_time)) x))
    ORDER BY office_id, day, start_time
    FOR UPDATE
), claim AS MATERIALIZED (
    -- The Idempotency-Key is still this request's (claim_token its token), locked to the
    -- commit: a retry that took over a lapsed lease first makes this request book nothing,
    -- and a retry after this commit finds the answer stored.
    SELECT k.api_key_hash, k.key FROM idempotency_keys k JOIN r
        ON k.api_key_hash = r.api_key_hash AND k.key = r.idempotency_key
        AND k.claim_token = r.claim_token
    FOR UPDATE OF k
), facts AS MATERIALIZED (
    SELECT r.*, w.id AS window_id, w.capacity - w.booked AS free, w.closed,
        pe.id AS person_id, pe.blocked_until, coalesce(pe.party_seq, 0) AS party_seq,
        EXISTS (SELECT FROM people o WHERE o.phone_hmac = r.phone_hmac
                AND o.id_hmac <> r.id_hmac) AS phone_taken,
        (r.claim_token IS NULL OR EXISTS (SELECT FROM claim c
            WHERE c.api_key_hash = r.api_key_hash AND c.key = r.idempotency_key)) AS claimed,
        own.seqs, own.active_id, own.today_n, mine.active_n, mine.today_n AS member_today_n,
        mine.active_id AS member_active_id,
        -- only a person's own cancellation starts a cooldown (an office's or a closure's not)
        CASE WHEN r.rebook_cooldown > 0 THEN greatest(own.cancelled_at, mine.cancelled_at)
            + make_interval(mins => r.rebook_cooldown) END AS retry_at
    FROM r
    LEFT JOIN w ON (w.office_id, w.day, w.start_time, w.end_time)
        = (r.office_id, r.day, r.start_time, r.end_time)
    LEFT JOIN people pe ON pe.id_hmac = r.id_hmac
    CROSS JOIN LATERAL (
        SELECT coalesce(array_agg(b.active_seq) FILTER (WHERE b.service_id = r.service_id
                    AND b.status = 'booked'), '{}') AS seqs,
            min(b.id) FILTER (WHERE b.service_id = r.service_id AND b.status = 'booked')
                AS active_id,
            count(*) FILTER (WHERE b.made_on = r.made_on)::int AS today_n,
            max(b.cancelled_at) FILTER (WHERE b.service_id = r.service_id
                AND b.status = 'cancelled' AND b.cancelled_by = 'person') AS cancelled_at
        FROM bookings b WHERE b.person_id = pe.id
    ) own
    CROSS JOIN LATERAL (
        -- the bookings the person holds a place in as a party's member count as their own
        SELECT count(*) FILTER (WHERE b.service_id = r.service_id AND b.status = 'booked')
                AS active_n,
            min(b.id) FILTER (WHERE b.service_id = r.service_id AND b.status = 'booked')
                AS active_id,
            count(*) FILTER (WHERE b.made_on = r.made_on) AS today_n,
            max(b.cancelled_at) FILTER (WHERE b.service_id = r.service_id
                AND b.status = 'cancelled' AND b.cancelled_by = 'person') AS cancelled_at
        FROM booking_members m JOIN bookings b ON b.id = m.booking_id
        WHERE m.person_id = pe.id
    ) mine
), verdicts AS MATERIALIZED (
    SELECT f.*, CASE
        WHEN NOT f.claimed THEN 'claim_lost'
        WHEN f.window_id IS NULL THEN 'no_window'
        WHEN f.closed THEN 'closed'
        WHEN f.blocked_until > f.now THEN 'blocked'
        WHEN f.phone_taken THEN 'phone'
        WHEN cardinality(f.seqs) + f.active_n >= f.active_per_service THEN 'active'
        WHEN f.retry_at > f.now THEN 'cooldown'
        WHEN f.today_n + f.member_today_n >= f.bookings_per_day THEN 'daily'
        ELSE 'ok' END AS verdict
    FROM facts f
), seats AS MATERIALIZED (
    -- the seats of each window taken in the bookings' order: `upto` is what this one and the
    -- ones before it ask for, `kept` what the ones that fit took
    SELECT v.ord, v.window_id, v.party_size, v.free, v.upto,
        coalesce(max(v.upto) FILTER (WHERE v.upto <= v.free)
            OVER (PARTITION BY v.window_id), 0) AS kept
    FROM (SELECT ord, window_id, party_size, free,
              sum(party_size) OVER (PARTITION BY window_id ORDER BY ord) AS upto
          FROM verdicts WHERE verdict = 'ok') v
), taken AS (
    UPDATE windows SET booked = booked + t.n
    FROM (SELECT window_id, sum(party_size) AS n FROM seats WHERE upto <= free
          GROUP BY window_id) t
    WHERE id = t.window_id AND booked + t.n <= capacity
    RETURNING id
), fits AS MATERIALIZED (
    SELECT v.* FROM verdicts v JOIN seats s ON s.ord = v.ord
    WHERE s.upto <= s.free AND s.window_id IN (SELECT id FROM taken)
), who AS (
    -- party_seq as read: a party booking that took the person meanwhile makes ON CONFLICT
    -- update nothing, `made` then fails on its NULL person_id and booking.py decides again
    INSERT INTO people AS p (id_hmac, id_type, id_masked, phone_hmac, created_at, party_seq)
    SELECT id_hmac, id_type, id_masked, phone_hmac, now, party_seq FROM fits
    ON CONFLICT (id_hmac) DO UPDATE SET phone_hmac = coalesce(EXCLUDED.phone_hmac, p.phone_hmac)
    WHERE p.party_seq = EXCLUDED.party_seq
    RETURNING id, id_hmac
), made AS (
    INSERT INTO bookings (id, window_id, window_day, office_id, service_id, person_id, id_type,
        id_masked, name, party_size, channel, reference, metadata, made_on, daily_seq,
        active_seq, created_at, cancel_deadline, notice_accepted)
    SELECT f.booking_id, f.window_id, f.day, f.office_id, f.service_id, who.id, f.id_type,
        f.id_masked, f.name, f.party_size, f.channel, f.reference, f.metadata, f.made_on,
        f.today_n + 1,
        (SELECT min(s) FROM generate_series(1, f.active_per_service) AS s
         WHERE s <> ALL (f.seqs)),
        f.now, f.cancel_deadline, f.notice_accepted
    FROM fits f LEFT JOIN who ON who.id_hmac = f.id_hmac
    RETURNING id
), event AS (
    INSERT INTO events (type, occurred_at, booking_id, window_day, payload)
    SELECT 'booking.created', f.now, f.booking_id, f.day, f.event_payload
    FROM fits f WHERE f.booking_id IN (SELECT id FROM made)
), idem AS (
    UPDATE idempotency_keys k SET outcome = 'booked', response = f.response
    FROM fits f
    WHERE k.api_key_hash = f.api_key_hash AND k.key = f.idempotency_key
        AND k.claim_token = f.claim_token AND f.booking_id IN (SELECT id FROM made)
)
SELECT v.ord, v.verdict,
    (SELECT id FROM made WHERE id = v.booking_id) AS booking_id,
    v.blocked_until, coalesce(v.active_id, v.member_active_id) AS active_booking_id,
    v.retry_at,
    -- would have fit, decided one after the other: decided again alone
    coalesce(s.upto > s.free AND s.party_size <= s.free - s.kept
        OR s.upto <= s.free AND s.window_id NOT IN (SELECT id FROM taken), false) AS alone
FROM verdicts v LEFT JOIN seats s ON s.ord = v.ord
ORDER BY v.ord

-- name: active_booking_of
SELECT b.id FROM bookings b JOIN people p ON p.id = b.person_id
WHERE p.id_hmac = $1 AND b.service_id = $2 AND b.status = 'booked'
ORDER BY b.created_at LIMIT 1

-- name: lock_party
-- Every identity of a party booking ($1 id_hmacs in order, $2 id_types, $3 masked), its people
-- row made or locked to the commit and its party_seq moved: two parties that share anyone, and
-- a plain booking of any of them, are decided one after the other.
INSERT INTO people AS p (id_hmac, id_type, id_masked, created_at, party_seq)
SELECT u.h, u.t, u.m, $4, 1 FROM unnest($1::bytea[], $2::text[], $3::text[]) AS u(h, t, m)
ORDER BY u.h
ON CONFLICT (id_hmac) DO UPDATE SET party_seq = p.party_seq + 1

-- name: party_verdict
-- The first member ($1 id_hmacs in the party's order) a person rule refuses, once their rows
-- are locked (lock_party): blocked, holding a booking of the service ($2, limit $5), the rebook
-- cooldown ($7 minutes), the bookings made today ($3, limit $4); $6 now. No row: none.
WITH m AS (
    SELECT u.h, u.ord FROM unnest($1::bytea[]) WITH ORDINALITY AS u(h, ord)
), pm AS (
    SELECT m.ord, p.id, p.blocked_until FROM m JOIN people p ON p.id_hmac = m.h
), held AS (
    SELECT pm.ord, b.id, b.service_id, b.status, b.made_on, b.cancelled_at, b.cancelled_by
    FROM pm JOIN bookings b ON b.person_id = pm.id
    UNION ALL
    SELECT pm.ord, b.id, b.service_id, b.status, b.made_on, b.cancelled_at, b.cancelled_by
    FROM pm JOIN booking_members bm ON bm.person_id = pm.id JOIN bookings b ON b.id = bm.booking_id
), each AS (
    SELECT pm.ord, pm.blocked_until,
        (SELECT count(*) FROM held h
         WHERE h.ord = pm.ord AND h.service_id = $2 AND h.status = 'booked') AS active,
        (SELECT min(h.id) FROM held h
         WHERE h.ord = pm.ord AND h.service_id = $2 AND h.status = 'booked') AS active_booking_id,
        (SELECT max(h.cancelled_at) + make_interval(mins => $7) FROM held h
         WHERE $7 > 0 AND h.ord = pm.ord AND h.service_id = $2 AND h.status = 'cancelled'
             AND h.cancelled_by = 'person') AS retry_at,
        (SELECT count(*) FROM held h WHERE h.ord = pm.ord AND h.made_on = $3) AS today
    FROM pm
), verdicts AS (
    SELECT ord, blocked_until, active_booking_id, retry_at, CASE
        WHEN blocked_until > $6 THEN 'blocked'
        WHEN active >= $5 THEN 'active'
        WHEN retry_at > $6 THEN 'cooldown'
        WHEN today >= $4 THEN 'daily'
        END AS verdict
    FROM each
)
SELECT verdict, blocked_until, active_booking_id, retry_at FROM verdicts
WHERE verdict IS NOT NULL ORDER BY ord LIMIT 1

-- name: insert_members
INSERT INTO booking_members (booking_id, position, person_id, id_type, id_masked, name)
SELECT $1, u.pos, p.id, u.t, u.m, u.n
FROM unnest($2::bytea[], $3::text[], $4::text[], $5::text[]) WITH ORDINALITY AS u(h, t, m, n, pos)
JOIN people p ON p.id_hmac = u.h

-- name: booking_by_id
{booking_rows} WHERE b.id = $1

-- name: lock_booking
-- The booking's row alone: locked through the windows join, a row a concurrent reschedule
-- moved would fail the join's recheck after the lock wait and read as no booking at all.
-- The caller reads it (booking_by_id) once the lock is held.
SELECT id FROM bookings WHERE id = $1 FOR UPDATE

-- name: release_seats
-- Seats given back by a booking that leaves `booked`; an admin's over-capacity shrinks first.
-- Returns the seats that became free: fewer than the party while the window stays over capacity.
UPDATE windows SET booked = booked - $2,
    over_capacity = LEAST(over_capacity, GREATEST(0, booked - $2 - capacity))
WHERE id = $1
RETURNING LEAST($2, GREATEST(0, capacity - booked))

-- name: take_seats
UPDATE windows SET booked = booked + $2
WHERE id = $1 AND booked + $2 <= capacity AND NOT closed
RETURNING id

-- name: set_cancelled
UPDATE bookings SET status = 'cancelled', cancelled_at = $2, cancelled_by = $3, cancel_reason = $4
WHERE id = $1 AND status = 'booked'

-- name: set_checked_in
UPDATE bookings SET status = 'checked_in', checked_in_at = $2, ticket = $3
WHERE id = $1 AND status = 'booked'

-- name: set_window
UPDATE bookings SET window_id = $2, window_day = $3, cancel_deadline = $4, reminded_at = NULL,
    reschedules = reschedules + 1
WHERE id = $1

-- name: next_ticket
INSERT INTO tickets (office_id, day, last) VALUES ($1, $2, 1)
ON CONFLICT (office_id, day) DO UPDATE SET last = tickets.last + 1
RETURNING last

-- name: insert_event
INSERT INTO events (type, occurred_at, booking_id, window_day, payload)
VALUES ($1, $2, $3, $4, $5)

-- name: search_by_identity
-- The person's bookings, and those they are a member of.
{booking_rows}
WHERE b.id IN (SELECT o.id FROM bookings o JOIN people p ON p.id = o.person_id
               WHERE p.id_hmac = $1
               UNION ALL
               SELECT m.booking_id FROM booking_members m JOIN people p ON p.id = m.person_id
               WHERE p.id_hmac = $1)
ORDER BY b.created_at DESC, b.id LIMIT 50

-- name: search_by_reference
{booking_rows}
WHERE b.reference = $1 ORDER BY b.created_at DESC, b.id LIMIT 50

-- ---------------------------------------------------------------- people

-- name: person_by_identity
SELECT id, blocked_until, unblocked_at FROM people WHERE id_hmac = $1

-- name: no_show_count
-- A waived no-show counts for nothing (API 1.1).
SELECT count(*)::int AS n, max(w.starts_at) AS last
FROM bookings b JOIN windows w ON w.id = b.window_id JOIN people p ON p.id = b.person_id
WHERE b.person_id = $1 AND b.status = 'no_show' AND b.no_show_waived_at IS NULL
    AND w.starts_at > $2 AND (p.unblocked_at IS NULL OR b.no_show_at > p.unblocked_at)

-- name: no_show_block_last
-- The latest unwaived no-show that has $3 unwaived no-shows (itself included) within $2 days
-- up to it: the no-show a block would run from, as the sweeps counted when they made it.
WITH counted AS (
    SELECT w.starts_at
    FROM bookings b JOIN windows w ON w.id = b.window_id JOIN people p ON p.id = b.person_id
    WHERE b.person_id = $1 AND b.status = 'no_show' AND b.no_show_waived_at IS NULL
        AND (p.unblocked_at IS NULL OR b.no_show_at > p.unblocked_at)
)
SELECT max(l.starts_at) FROM counted l
WHERE (SELECT count(*) FROM counted e
       WHERE e.starts_at > l.starts_at - make_interval(days => $2)
           AND e.starts_at <= l.starts_at) >= $3

-- name: cancellation_count
SELECT count(*)::int AS n, max(b.cancelled_at) AS last
FROM bookings b JOIN people p ON p.id = b.person_id
WHERE b.person_id = $1 AND b.status = 'cancelled' AND b.cancelled_by = 'person'
    AND b.cancelled_at > $2 AND (p.unblocked_at IS NULL OR b.cancelled_at > p.unblocked_at)

-- name: block_person
UPDATE people SET blocked_until = $2
WHERE id = $1 AND (blocked_until IS NULL OR blocked_until < $2)
RETURNING blocked_until

-- name: lower_block
-- A block recomputed after a waiver: it only ever ends sooner, and a lifted one stays lifted.
UPDATE people SET blocked_until = CASE WHEN $2::timestamptz IS NULL THEN NULL
                                       ELSE LEAST(blocked_until, $2) END
WHERE id = $1 AND blocked_until IS NOT NULL
RETURNING blocked_until

-- name: unblock_person
UPDATE people SET blocked_until = NULL, unblocked_at = $2 WHERE id_hmac = $1
RETURNING id

-- name: active_bookings_of
{booking_rows}
WHERE (b.person_id = $1
       OR b.id IN (SELECT m.booking_id FROM booking_members m WHERE m.person_id = $1))
    AND b.status = 'booked'
ORDER BY w.starts_at

-- ---------------------------------------------------------------- jobs

-- name: due_no_shows
{booking_rows}
WHERE b.status = 'booked' AND w.ends_at < $1
ORDER BY w.ends_at, b.id LIMIT $2 FOR UPDATE OF b SKIP LOCKED

-- name: set_no_show
UPDATE bookings SET status = 'no_show', no_show_at = $2 WHERE id = $1 AND status = 'booked'

-- name: set_no_show_waived
UPDATE bookings SET no_show_waived_at = $2, no_show_waive_reason = $3
WHERE id = $1 AND status = 'no_show' AND no_show_waived_at IS NULL

-- name: due_reminders
SELECT b.id FROM bookings b JOIN windows w ON w.id = b.window_id
WHERE b.status = 'booked' AND b.reminded_at IS NULL AND w.day = ANY($1::date[])
    AND b.office_id = $2
ORDER BY b.id LIMIT 1000 FOR UPDATE OF b SKIP LOCKED

-- name: set_reminded
UPDATE bookings SET reminded_at = $2 WHERE id = ANY($1::text[])

-- name: purge_events
DELETE FROM events WHERE window_day < $1

-- name: purge_bookings
DELETE FROM bookings WHERE window_day < $1

-- name: purge_windows
DELETE FROM windows w WHERE w.day < $1
    AND NOT EXISTS (SELECT FROM bookings b WHERE b.window_id = w.id)

-- name: purge_opened_days
DELETE FROM opened_days WHERE day < $1

-- name: purge_idempotency
DELETE FROM idempotency_keys WHERE created_at < $1

-- name: purge_tickets
DELETE FROM tickets WHERE day < $1

-- name: purge_people
-- People with no booking left keep nothing worth keeping (no block in force).
DELETE FROM people p WHERE NOT EXISTS (SELECT FROM bookings b WHERE b.person_id = p.id)
    AND NOT EXISTS (SELECT FROM booking_members m WHERE m.person_id = p.id)
    AND (p.blocked_until IS NULL OR p.blocked_until < $1) AND p.created_at < $2

-- ---------------------------------------------------------------- events feed

-- name: events_after
-- Only events whose transaction is older than every transaction still running are shown:
-- later commits can then only add events after the cursor, never before it. The text form
-- gets its own name: ORDER BY `xid` must compare the xid8 column as a number, not as text.
SELECT id, xid::text AS cursor_xid, type, occurred_at, payload FROM events
WHERE (xid, id) > ($1::xid8, $2::bigint)
    AND xid < pg_snapshot_xmin(pg_current_snapshot())
ORDER BY xid, id LIMIT $3

-- name: webhook_cursor_get
SELECT xid::text AS cursor_xid, id FROM webhook_cursor

-- name: webhook_cursor_set
INSERT INTO webhook_cursor (one, xid, id) VALUES (true, $1::xid8, $2)
ON CONFLICT (one) DO UPDATE SET xid = EXCLUDED.xid, id = EXCLUDED.id

-- ---------------------------------------------------------------- idempotency

-- name: idem_claim
-- Own the key for a request ($6 its token): a new row, or a take-over of a key kept past its
-- period ($7: the service clock's now minus the period, as the purge counts) or of a claim
-- whose lease lapsed with no answer, for the same body. The lease runs on Postgres's own clock;
-- the row lock lets one retry win a take-over, and a claim whose lease runs is never taken.
INSERT INTO idempotency_keys AS k
    (api_key_hash, key, request_hash, created_at, lease_until, claim_token)
VALUES ($1, $2, $3, $4, clock_timestamp() + make_interval(secs => $5), $6)
ON CONFLICT (api_key_hash, key) DO UPDATE
SET request_hash = EXCLUDED.request_hash, created_at = EXCLUDED.created_at, outcome = NULL,
    response = NULL, lease_until = EXCLUDED.lease_until, claim_token = EXCLUDED.claim_token
WHERE k.created_at < $7
    OR (k.outcome IS NULL AND k.request_hash = EXCLUDED.request_hash
        AND coalesce(k.lease_until < clock_timestamp(), true))
RETURNING true

-- name: idem_refuse
INSERT INTO idempotency_keys (api_key_hash, key, request_hash, created_at, outcome, response)
VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING RETURNING true

-- name: idem_get
-- retry_after: whole seconds left on a claim's lease (at least 1), by Postgres's clock.
SELECT request_hash, outcome, response, created_at,
    greatest(1, ceil(extract(epoch FROM lease_until - clock_timestamp())))::int AS retry_after
FROM idempotency_keys
WHERE api_key_hash = $1 AND key = $2

-- name: idem_finish
-- Only while the claim is still this request's: one taken over is the new request's to answer.
UPDATE idempotency_keys SET outcome = $3, response = $4
WHERE api_key_hash = $1 AND key = $2 AND claim_token = $5 AND outcome IS NULL

-- name: idem_store
-- A success's response, in the transaction of the change, while the claim is still its own.
UPDATE idempotency_keys SET outcome = 'booked', response = $3
WHERE api_key_hash = $1 AND key = $2 AND claim_token = $4 AND outcome IS NULL
RETURNING true

-- name: idem_release
DELETE FROM idempotency_keys
WHERE api_key_hash = $1 AND key = $2 AND claim_token = $3 AND outcome IS NULL

-- ---------------------------------------------------------------- test clock

-- name: clock_now
SELECT now FROM test_clock

-- name: clock_set
INSERT INTO test_clock (one, now) VALUES (true, $1)
ON CONFLICT (one) DO UPDATE SET now = EXCLUDED.now

-- name: clock_reset
DELETE FROM test_clock

-- ---------------------------------------------------------------- locks, health, migrations

-- name: ping
SELECT 1

-- name: try_lock
SELECT pg_try_advisory_lock($1)

-- name: lock
SELECT pg_advisory_lock($1)

-- name: unlock
SELECT pg_advisory_unlock($1)

-- name: migrations_table
CREATE TABLE IF NOT EXISTS schema_migrations (
    version integer PRIMARY KEY, name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now())

-- name: migrations_done
SELECT version FROM schema_migrations

-- name: migration_applied
INSERT INTO schema_migrations (version, name) VALUES ($1, $2)

-- ---------------------------------------------------------------- planner statistics

-- name: outgrown_statistics
-- Of the tables named in $1, those now at least 4 times the pages (and 16 pages) their planner
-- statistics were counted at: a plan cached while they were small may scan them whole. Only
-- tables this user may ANALYZE (it owns them).
SELECT t.name
FROM unnest($1::text[]) AS t(name)
JOIN pg_class c ON c.oid = to_regclass(t.name)
WHERE pg_relation_size(c.oid) >= greatest(4 * greatest(c.relpages, 1), 16)::bigint
    * current_setting('block_size')::bigint
    AND pg_has_role(c.relowner, 'USAGE')

-- name: try_xact_lock
SELECT pg_try_advisory_xact_lock($1)

-- The tables statistics.py keeps counted: what the booking path, the draw and the waitlist read
-- by a key as they grow (`analyze_<table>`).
-- name: analyze_people
ANALYZE people

-- name: analyze_bookings
ANALYZE bookings

-- name: analyze_booking_members
ANALYZE booking_members

-- name: analyze_events
ANALYZE events

-- name: analyze_idempotency_keys
ANALYZE idempotency_keys

-- name: analyze_entries
ANALYZE entries

-- name: analyze_entry_identities
ANALYZE entry_identities

-- name: analyze_waitlist
ANALYZE waitlist

-- name: analyze_waitlist_identities
ANALYZE waitlist_identities
