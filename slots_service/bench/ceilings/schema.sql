-- The L_pg / L_hot tables: the booking transaction's two writes and nothing else.
-- psql variable :windows is the number of windows (pg.py passes it).
DROP TABLE IF EXISTS bookings;
DROP TABLE IF EXISTS windows;
CREATE TABLE windows (
    id        integer PRIMARY KEY,
    capacity  integer NOT NULL,
    booked    integer NOT NULL DEFAULT 0,
    CHECK (booked <= capacity)
);
CREATE TABLE bookings (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    window_id   integer NOT NULL,
    person_id   integer NOT NULL,
    party_size  integer NOT NULL DEFAULT 1,
    status      text NOT NULL DEFAULT 'booked',
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX bookings_window_idx ON bookings (window_id);
-- A capacity no run can exhaust: every transaction books.
INSERT INTO windows (id, capacity, booked)
SELECT g, 1000000000, 0 FROM generate_series(1, :windows) AS g;
VACUUM ANALYZE windows;
