-- The catalog's version, bumped in the transaction of every office or service write (which
-- also NOTIFYs `slots_catalog`), and the processes that keep a copy of it: each reports the
-- version it serves, and a write is answered once every live copy serves it (catalog.py).
CREATE TABLE catalog_version (
    one      boolean PRIMARY KEY DEFAULT true CHECK (one),
    version  bigint NOT NULL
);
INSERT INTO catalog_version (one, version) VALUES (true, 0);

CREATE TABLE catalog_readers (
    reader   text PRIMARY KEY,        -- host:pid:random of a process with a catalog copy
    version  bigint NOT NULL,         -- the version it serves
    seen_at  timestamptz NOT NULL     -- Postgres's clock; a silent reader is gone
);
