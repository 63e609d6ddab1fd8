-- pgbench script: one booking transaction, on a random one of :windows windows
-- (pgbench -D windows=N; 1 for L_hot: every client queues on the same row lock).
\set wid random(1, :windows)
\set person random(1, 10000000)
BEGIN;
INSERT INTO bookings (window_id, person_id, party_size) VALUES (:wid, :person, 1);
UPDATE windows SET booked = booked + 1 WHERE id = :wid AND booked < capacity;
END;
