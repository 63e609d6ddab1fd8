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
