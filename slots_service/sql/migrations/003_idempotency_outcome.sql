-- An idempotent answer is kept as the domain's outcome, not as HTTP: `outcome` is 'booked'
-- (the response holds the booking) or a refusal's code (the response holds its detail and
-- members). The routes turn either into an answer; a replayed refusal is the same error raised
-- again. `status` is no longer written: a later migration drops it, once no process of the
-- previous release can still read it.
ALTER TABLE idempotency_keys ADD COLUMN outcome text;
ALTER TABLE idempotency_keys ALTER COLUMN status DROP NOT NULL;

UPDATE idempotency_keys
SET outcome = CASE WHEN status = 201 THEN 'booked'
                   ELSE convert_from(response, 'UTF8')::jsonb ->> 'code' END
WHERE status IS NOT NULL;

UPDATE idempotency_keys
SET response = convert_to(
    (convert_from(response, 'UTF8')::jsonb - 'type' - 'title' - 'status' - 'code')::text, 'UTF8')
WHERE outcome IS NOT NULL AND outcome <> 'booked';
