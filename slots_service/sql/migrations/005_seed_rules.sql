-- API 1.1 seed rules on bookings and services: reschedules counted per booking (the limit
-- SLOTS_MAX_RESCHEDULES), a no-show waived on proof (it no longer counts towards the no-show
-- block), a service's business notice (业务须知) with the documents to bring, and whether a
-- booking accepted it. Every column has a constant default: adding it rewrites no table, and a
-- process of the previous release, which names none of them, keeps working.
ALTER TABLE bookings
    ADD COLUMN reschedules integer NOT NULL DEFAULT 0 CHECK (reschedules >= 0),
    ADD COLUMN no_show_waived_at timestamptz,
    ADD COLUMN no_show_waive_reason text,
    ADD COLUMN notice_accepted boolean NOT NULL DEFAULT false;

ALTER TABLE services
    ADD COLUMN notice text,
    ADD COLUMN documents text[] NOT NULL DEFAULT '{}',
    ADD COLUMN notice_required boolean NOT NULL DEFAULT false;

-- Party members (API 1.1): the other people of a party, each held to the person rules, kept
-- like the person (HMAC via people, the masked number, never the number). `party_seq` moves
-- whenever a party booking takes a person's row: a plain booking statement that waited on that
-- row sees it moved and decides again with what the party committed.
ALTER TABLE people ADD COLUMN party_seq bigint NOT NULL DEFAULT 0;

CREATE TABLE booking_members (
    booking_id  text NOT NULL REFERENCES bookings (id) ON DELETE CASCADE,
    position    integer NOT NULL CHECK (position >= 1),
    person_id   bigint NOT NULL REFERENCES people (id),
    id_type     text NOT NULL,
    id_masked   text NOT NULL,
    name        text NOT NULL,
    PRIMARY KEY (booking_id, position),
    CONSTRAINT booking_members_once UNIQUE (booking_id, person_id)
);
CREATE INDEX booking_members_person ON booking_members (person_id);
