-- slots-service schema, version 1.
-- Postgres is the durable record and the final arbiter of every seat.

CREATE TABLE services (
    id                  text PRIMARY KEY,
    name                text NOT NULL,
    cancel_cutoff       jsonb NOT NULL,
    max_party_size      integer NOT NULL CHECK (max_party_size >= 1),
    requires_reference  boolean NOT NULL DEFAULT false,
    updated_at          timestamptz NOT NULL
);

CREATE TABLE offices (
    id              text PRIMARY KEY,
    name            text NOT NULL,
    timezone        text NOT NULL,
    services        text[] NOT NULL,
    window_minutes  integer NOT NULL CHECK (window_minutes BETWEEN 5 AND 720),
    hours           jsonb NOT NULL,
    updated_at      timestamptz NOT NULL
);

-- Holidays and make-up workdays, for every office.
CREATE TABLE calendar_days (
    day         date PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('holiday', 'workday')),
    as_weekday  text CHECK (as_weekday IN ('mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun')),
    name        text NOT NULL DEFAULT '',
    CHECK ((kind = 'workday') = (as_weekday IS NOT NULL))
);

CREATE TABLE closures (
    office_id   text NOT NULL REFERENCES offices (id),
    day         date NOT NULL,
    reason      text NOT NULL,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (office_id, day)
);

-- A window exists once its day was opened (planned from the office's hours then).
-- `booked` counts seats held by `booked` and `checked_in` bookings (a person who arrived
-- keeps the seat). The CHECK is the last line of defence
-- against overselling; `over_capacity` only lets an admin lower capacity below seats
-- already sold (nobody is cancelled) and shrinks back as those seats are released.
CREATE TABLE windows (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    office_id      text NOT NULL REFERENCES offices (id),
    day            date NOT NULL,
    start_time     time NOT NULL,
    end_time       time NOT NULL,
    starts_at      timestamptz NOT NULL,
    ends_at        timestamptz NOT NULL,
    capacity       integer NOT NULL CHECK (capacity >= 0),
    booked         integer NOT NULL DEFAULT 0 CHECK (booked >= 0),
    over_capacity  integer NOT NULL DEFAULT 0 CHECK (over_capacity >= 0),
    -- a holiday or an office closure: no new bookings, the windows are kept
    closed         boolean NOT NULL DEFAULT false,
    CONSTRAINT windows_not_oversold CHECK (booked <= capacity + over_capacity),
    CONSTRAINT windows_office_day_start UNIQUE (office_id, day, start_time)
);

-- Days whose windows were planned; their windows no longer follow the office's hours.
-- `planned_as`: the weekday whose hours made the windows (another one on a make-up workday).
CREATE TABLE opened_days (
    office_id   text NOT NULL REFERENCES offices (id),
    day         date NOT NULL,
    opened_at   timestamptz NOT NULL,
    planned_as  text,
    PRIMARY KEY (office_id, day)
);

-- A person is an identity: the number is kept only as an HMAC and a masked form.
CREATE TABLE people (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id_hmac         bytea NOT NULL,
    id_type         text NOT NULL,
    id_masked       text NOT NULL,
    phone_hmac      bytea,
    blocked_until   timestamptz,
    unblocked_at    timestamptz,
    created_at      timestamptz NOT NULL,
    CONSTRAINT people_identity UNIQUE (id_hmac),
    CONSTRAINT people_phone_bound UNIQUE (phone_hmac)
);

CREATE TABLE bookings (
    id               text PRIMARY KEY,
    window_id        bigint NOT NULL REFERENCES windows (id),
    office_id        text NOT NULL,
    service_id       text NOT NULL,
    person_id        bigint NOT NULL REFERENCES people (id),
    id_type          text NOT NULL,
    id_masked        text NOT NULL,
    name             text NOT NULL,
    party_size       integer NOT NULL CHECK (party_size >= 1),
    channel          text NOT NULL,
    reference        text,
    metadata         jsonb NOT NULL DEFAULT '{}',
    status           text NOT NULL DEFAULT 'booked'
                     CHECK (status IN ('booked', 'cancelled', 'checked_in', 'no_show')),
    -- office-local day on which the booking was made, for the daily limit
    made_on          date NOT NULL,
    daily_seq        integer NOT NULL,
    active_seq       integer NOT NULL,
    created_at       timestamptz NOT NULL,
    cancel_deadline  timestamptz,
    cancelled_at     timestamptz,
    cancelled_by     text CHECK (cancelled_by IN ('person', 'office')),
    cancel_reason    text,
    checked_in_at    timestamptz,
    ticket           text,
    no_show_at       timestamptz,
    reminded_at      timestamptz,
    window_day       date NOT NULL
);
-- One active (booked) booking per person and service (active_seq is 1..limit).
CREATE UNIQUE INDEX bookings_one_active_per_service
    ON bookings (person_id, service_id, active_seq) WHERE status = 'booked';
-- The daily limit: daily_seq is 1..limit within an office-local day.
CREATE UNIQUE INDEX bookings_daily_limit ON bookings (person_id, made_on, daily_seq);
CREATE INDEX bookings_window ON bookings (window_id) WHERE status = 'booked';
CREATE INDEX bookings_person ON bookings (person_id, created_at DESC);
CREATE INDEX bookings_reference ON bookings (reference) WHERE reference IS NOT NULL;
CREATE INDEX bookings_window_day ON bookings (window_day);

-- Queue numbers handed out at check-in, per office and day.
CREATE TABLE tickets (
    office_id  text NOT NULL,
    day        date NOT NULL,
    last       integer NOT NULL,
    PRIMARY KEY (office_id, day)
);

-- The events outbox. `xid` orders the feed: an event is published only once every
-- transaction that started before it has ended, so a cursor never skips a late commit.
CREATE TABLE events (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    xid          xid8 NOT NULL DEFAULT pg_current_xact_id(),
    type         text NOT NULL,
    occurred_at  timestamptz NOT NULL,
    booking_id   text,
    window_day   date,
    payload      jsonb NOT NULL
);
CREATE INDEX events_feed ON events (xid, id);
CREATE INDEX events_window_day ON events (window_day);

CREATE TABLE idempotency_keys (
    api_key_hash  bytea NOT NULL,
    key           text NOT NULL,
    request_hash  bytea NOT NULL,
    status        integer,            -- NULL while the first request is running
    response      bytea,
    created_at    timestamptz NOT NULL,
    PRIMARY KEY (api_key_hash, key)
);
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);

-- The deployment-wide test clock (SLOTS_TEST_CLOCK=1 only): one row or none.
CREATE TABLE test_clock (
    one   boolean PRIMARY KEY DEFAULT true CHECK (one),
    now   timestamptz NOT NULL
);

-- How far the webhook sender has delivered the feed.
CREATE TABLE webhook_cursor (
    one     boolean PRIMARY KEY DEFAULT true CHECK (one),
    xid     xid8 NOT NULL,
    id      bigint NOT NULL
);
