-- API 1.1 fair release by lottery and the waitlist.
--
-- An office's `release` ({"mode": "first_come"} when NULL) and since when it has been in
-- lottery mode: a day is released by a draw when it enters the horizon after that instant
-- (days already in the horizon at the switch keep their seats as they are).
ALTER TABLE offices
    ADD COLUMN release jsonb,
    ADD COLUMN lottery_since timestamptz;

-- One record per office-day drawn: made when its entry period opens (or at its first entry,
-- or at the draw), the seed drawn from `secrets` then and only its SHA-256 shown until
-- `drawn_at`. The draw takes this row's lock, so it runs once however many run it.
CREATE TABLE releases (
    office_id        text NOT NULL REFERENCES offices (id),
    day              date NOT NULL,
    entries_open_at  timestamptz NOT NULL,
    draw_at          timestamptz NOT NULL,
    seed             bytea NOT NULL,
    commitment       text NOT NULL,
    drawn_at         timestamptz,
    entries          integer,
    won              integer,
    lost             integer,
    PRIMARY KEY (office_id, day)
);

-- Entries into a draw. The person and members are kept as people are (HMAC, masked number).
-- `members`: [{"id_hmac": hex, "id_type", "id_masked", "name"}].
CREATE TABLE entries (
    id               text PRIMARY KEY,
    office_id        text NOT NULL,
    service_id       text NOT NULL,
    day              date NOT NULL,
    choices          text[] NOT NULL,
    party_size       integer NOT NULL CHECK (party_size >= 1),
    id_hmac          bytea NOT NULL,
    id_type          text NOT NULL,
    id_masked        text NOT NULL,
    name             text NOT NULL,
    phone_hmac       bytea,
    members          jsonb NOT NULL DEFAULT '[]',
    channel          text NOT NULL,
    reference        text,
    metadata         jsonb NOT NULL DEFAULT '{}',
    notice_accepted  boolean NOT NULL DEFAULT false,
    waitlist         boolean NOT NULL DEFAULT false,
    status           text NOT NULL DEFAULT 'entered'
                     CHECK (status IN ('entered', 'won', 'lost', 'withdrawn')),
    created_at       timestamptz NOT NULL,
    rank             integer,
    won_start        text,
    booking_id       text,
    lost_reason      text,
    waitlist_id      text,
    FOREIGN KEY (office_id, day) REFERENCES releases (office_id, day)
);
CREATE INDEX entries_draw ON entries (office_id, day, rank);

-- One entry per identity (person and members alike) per office and date, while it is not
-- withdrawn: the arbiter of uniqueness.
CREATE TABLE entry_identities (
    office_id  text NOT NULL,
    day        date NOT NULL,
    id_hmac    bytea NOT NULL,
    entry_id   text NOT NULL REFERENCES entries (id) ON DELETE CASCADE,
    PRIMARY KEY (office_id, day, id_hmac)
);
CREATE INDEX entry_identities_entry ON entry_identities (entry_id);

-- The waitlist: freed seats go to the oldest fitting `waiting` entry (by seq).
CREATE TABLE waitlist (
    id               text PRIMARY KEY,
    seq              bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    office_id        text NOT NULL,
    service_id       text NOT NULL,
    from_day         date NOT NULL,
    to_day           date NOT NULL CHECK (to_day >= from_day),
    party_size       integer NOT NULL CHECK (party_size >= 1),
    id_hmac          bytea NOT NULL,
    id_type          text NOT NULL,
    id_masked        text NOT NULL,
    name             text NOT NULL,
    phone_hmac       bytea,
    members          jsonb NOT NULL DEFAULT '[]',
    channel          text NOT NULL,
    reference        text,
    metadata         jsonb NOT NULL DEFAULT '{}',
    notice_accepted  boolean NOT NULL DEFAULT false,
    status           text NOT NULL DEFAULT 'waiting'
                     CHECK (status IN ('waiting', 'booked', 'cancelled', 'expired')),
    created_at       timestamptz NOT NULL,
    ended_at         timestamptz,
    booking_id       text
);
CREATE INDEX waitlist_waiting ON waitlist (office_id, seq) WHERE status = 'waiting';

-- One `waiting` entry per identity and service.
CREATE TABLE waitlist_identities (
    service_id   text NOT NULL,
    id_hmac      bytea NOT NULL,
    waitlist_id  text NOT NULL REFERENCES waitlist (id) ON DELETE CASCADE,
    PRIMARY KEY (service_id, id_hmac)
);
CREATE INDEX waitlist_identities_entry ON waitlist_identities (waitlist_id);
