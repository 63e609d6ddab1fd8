-- Idempotency claims hold a lease on Postgres's own clock, and a token naming their request.
-- A claim whose request died (process killed, connection lost) is taken over by a retry once
-- `lease_until` has passed; the booking statement writes only while the token is still its own,
-- so a request slower than its lease can never book a second time.

ALTER TABLE idempotency_keys
    ADD COLUMN lease_until timestamptz,   -- meaningful while status IS NULL
    ADD COLUMN claim_token bytea;         -- the request that owns the claim

-- A claim written without a lease (a process of the previous release, during a rolling
-- deploy) keeps the 60 s the previous release waited before a take-over. Setting the default
-- after adding the column leaves existing rows alone: no table rewrite.
ALTER TABLE idempotency_keys
    ALTER COLUMN lease_until SET DEFAULT clock_timestamp() + interval '60 seconds';
UPDATE idempotency_keys SET lease_until = clock_timestamp() + interval '60 seconds'
WHERE status IS NULL;
