-- One index entry fewer per booking (it wrote 12 B-tree entries: 3 for its person, 6 for the
-- booking, 3 for its event). bookings_person (person_id, created_at DESC) is redundant: every
-- query that finds a person's bookings does so by person_id alone, bookings_daily_limit
-- (person_id, made_on, daily_seq) leads with it, and none reads bookings in created_at order
-- through the index. Every index that enforces a rule stays, and so does every constraint.
DROP INDEX IF EXISTS bookings_person;
