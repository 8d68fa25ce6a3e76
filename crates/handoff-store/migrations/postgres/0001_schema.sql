-- The PostgreSQL schema of handoff, version 1: the same tables and rules as the SQLite schema
-- (crates/handoff-store/src/sqlite/migrations.rs, all of its migrations), written once for a
-- server that several nodes share. Never edit a released migration: add the next file.
--
-- The functions keep the search_path they were created with (the store's schema), so that the
-- tables they name are found whatever the caller's search_path.
--
-- Conventions, as in SQLite: instants are BIGINT microseconds since the Unix epoch, UTC
-- (`*_us`), so that a ping's identity (event, device, t to the microsecond) is the same on both
-- backends; the tables of facts are append-only, enforced here by triggers, not by the code.

CREATE TABLE plans (
    event_id   TEXT   NOT NULL,
    version    BIGINT NOT NULL CHECK (version >= 1),
    plan_json  TEXT   NOT NULL,
    plan_hash  TEXT   NOT NULL,
    created_us BIGINT NOT NULL,
    -- Two nodes storing a plan at once: one gets the version, the other retries with the next.
    PRIMARY KEY (event_id, version)
);

CREATE TABLE devices (
    event_id   TEXT   NOT NULL,
    device_id  TEXT   NOT NULL,
    carrier    TEXT   NOT NULL,
    -- The relay the carrier carries in, when the name alone does not say (race mode).
    relay_id   TEXT,
    token_hash TEXT   NOT NULL,
    speed_unit TEXT   CHECK (speed_unit IN ('knots', 'mps', 'kmh')),
    created_us BIGINT NOT NULL,
    PRIMARY KEY (event_id, device_id),
    CONSTRAINT devices_token_hash_key UNIQUE (token_hash)
);

-- seq is an identity: it only grows (CACHE 1, the default: values are handed out in time order
-- across sessions). A sequence hands out numbers at insert, not at commit, so transactions can
-- commit out of seq order; see the feed lock below for how a reader paging by seq stays right.
CREATE TABLE pings (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY (SEQUENCE NAME pings_seq) PRIMARY KEY,
    event_id    TEXT             NOT NULL,
    device_id   TEXT             NOT NULL,
    t_us        BIGINT           NOT NULL,
    lon         DOUBLE PRECISION NOT NULL,
    lat         DOUBLE PRECISION NOT NULL,
    acc_m       DOUBLE PRECISION,
    speed_mps   DOUBLE PRECISION,
    heading_deg DOUBLE PRECISION,
    alt_m       DOUBLE PRECISION,
    batt_pct    DOUBLE PRECISION,
    received_us BIGINT           NOT NULL,
    -- A resent ping (same device time) is a duplicate: ingest is idempotent.
    CONSTRAINT pings_identity_key UNIQUE (event_id, device_id, t_us)
);
-- Rebuilding an event's live state reads its pings in device-time order; catching up pages
-- them in arrival order.
CREATE INDEX pings_by_event_time ON pings (event_id, t_us, seq);
CREATE INDEX pings_by_event_seq ON pings (event_id, seq);

-- The change feed: one row per input (a plan version, a device, the pings of one event that one
-- write stored, a custody entry, a webhook), written in the same statement or transaction as
-- the input's own rows, so that `seq` numbers every input across events and kinds. The row it
-- names: `row_seq` is plans.version or custody.seq, `row_id` devices.device_id or
-- webhooks.webhook_id, `ping_seqs` the pings' seqs (not a range: concurrent writers' pings
-- interleave in the sequence).
CREATE TABLE changes (
    seq       BIGINT GENERATED ALWAYS AS IDENTITY (SEQUENCE NAME changes_seq) PRIMARY KEY,
    kind      TEXT     NOT NULL CHECK (kind IN ('plan', 'device', 'ping', 'custody', 'webhook')),
    event_id  TEXT     NOT NULL,
    row_seq   BIGINT,
    ping_seqs BIGINT[],
    row_id    TEXT,
    CHECK ((kind IN ('plan', 'custody')) = (row_seq IS NOT NULL)),
    CHECK ((kind = 'ping') = (ping_seqs IS NOT NULL AND cardinality(ping_seqs) > 0)),
    CHECK ((kind IN ('device', 'webhook')) = (row_id IS NOT NULL))
);

-- The feed lock: what lets a reader page pings or changes by `seq > cursor` without ever
-- skipping one that commits late. Every statement inserting into either table first takes a
-- transaction-level advisory lock in SHARED mode (a BEFORE statement trigger, so before any row
-- gets its seq, and whoever inserts: the store, a migration tool, psql); writers never wait for
-- one another, and each commit is PostgreSQL's own (group commit included). A reader first asks
-- for the horizon (handoff_ping_horizon, handoff_change_horizon): it takes the same lock
-- EXCLUSIVE, which is granted once every writer that holds it has committed or rolled back (new
-- writers queue behind it for that moment), and reads the highest seq handed out so far. Every
-- seq up to the horizon is then final, and any later one will be higher (the sequences have
-- CACHE 1, the default), so a page `seq > cursor AND seq <= horizon` is complete.
-- The key is "handoff" in ASCII; advisory locks are per database.
CREATE FUNCTION handoff_feed_write() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(29400045363307366);
    RETURN NULL;
END
$$;
CREATE TRIGGER pings_feed_write BEFORE INSERT ON pings
    FOR EACH STATEMENT EXECUTE FUNCTION handoff_feed_write();
CREATE TRIGGER changes_feed_write BEFORE INSERT ON changes
    FOR EACH STATEMENT EXECUTE FUNCTION handoff_feed_write();

CREATE FUNCTION handoff_ping_horizon() RETURNS BIGINT LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(29400045363307366);
    RETURN COALESCE(pg_sequence_last_value('pings_seq'), 0);
END
$$;

CREATE FUNCTION handoff_change_horizon() RETURNS BIGINT LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(29400045363307366);
    RETURN COALESCE(pg_sequence_last_value('changes_seq'), 0);
END
$$;

CREATE TABLE custody (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id   TEXT   NOT NULL,
    relay_id   TEXT   NOT NULL,
    -- 0 for the first entry of a chain, then one more per entry: two nodes appending the same
    -- step (even the first, whatever each thinks the chain commits to) collide here, and
    -- exactly one wins.
    position   BIGINT NOT NULL CHECK (position >= 0),
    entry_json TEXT   NOT NULL,
    hash       TEXT   NOT NULL,
    prev_hash  TEXT   NOT NULL,
    created_us BIGINT NOT NULL,
    CONSTRAINT custody_position_key UNIQUE (event_id, relay_id, position),
    -- Two entries can never follow the same one: a handoff wins exactly once.
    CONSTRAINT custody_prev_hash_key UNIQUE (event_id, relay_id, prev_hash),
    -- A hash can't appear twice in one chain (that would be a cycle).
    CONSTRAINT custody_hash_key UNIQUE (event_id, relay_id, hash)
);

-- Each entry after the first follows the entry before it: its prev_hash is that entry's hash.
-- Checked at commit (a deferred constraint trigger), so that a restore copying the rows in any
-- order (pg_restore) passes, and so does a transaction appending several entries of a chain.
CREATE FUNCTION handoff_custody_follows() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
BEGIN
    IF NEW.position > 0 AND NOT EXISTS (
        SELECT 1 FROM custody
        WHERE event_id = NEW.event_id AND relay_id = NEW.relay_id
          AND position = NEW.position - 1 AND hash = NEW.prev_hash
    ) THEN
        RAISE EXCEPTION 'custody entry % of relay % in event % does not follow entry %',
            NEW.position, NEW.relay_id, NEW.event_id, NEW.position - 1
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER custody_follows AFTER INSERT ON custody
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION handoff_custody_follows();

CREATE TABLE webhooks (
    -- The order they were added in.
    seq        BIGINT GENERATED ALWAYS AS IDENTITY,
    event_id   TEXT   NOT NULL,
    webhook_id TEXT   NOT NULL,
    url        TEXT   NOT NULL,
    -- The HMAC key, kept as given: signing needs it (unlike a token, it cannot be hashed).
    secret     TEXT   NOT NULL,
    -- The kinds of notification wanted; empty means every kind.
    kinds      TEXT[] NOT NULL,
    created_us BIGINT NOT NULL,
    PRIMARY KEY (event_id, webhook_id)
);

-- One row per attempt: a notification retried three times is three rows with one
-- delivery_id. status is the receiver's HTTP status (NULL when it never answered).
CREATE TABLE webhook_deliveries (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id    TEXT    NOT NULL,
    webhook_id  TEXT    NOT NULL,
    delivery_id TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    attempt     BIGINT  NOT NULL CHECK (attempt >= 1),
    status      INTEGER CHECK (status BETWEEN 0 AND 65535),
    error       TEXT,
    at_us       BIGINT  NOT NULL
);
CREATE INDEX webhook_deliveries_by_event ON webhook_deliveries (event_id, seq);

-- The newest saved state of each event's live engine. Derived data, not a fact: one row per
-- event, replaced as the engine moves on (so not append-only); dropping it costs only a full
-- replay at the next start.
CREATE TABLE engine_checkpoints (
    event_id     TEXT   PRIMARY KEY,
    plan_version BIGINT NOT NULL,
    plan_hash    TEXT   NOT NULL,
    format       BIGINT NOT NULL CHECK (format BETWEEN 0 AND 4294967295),
    -- Every ping of the event with seq <= cursor is reflected in the state.
    cursor       BIGINT NOT NULL,
    created_us   BIGINT NOT NULL,
    state        BYTEA  NOT NULL
);

-- The admin token's hash when `handoff serve` generated the token (no HANDOFF_ADMIN_TOKEN):
-- in the database, so that every node sharing it accepts the one token printed on the first
-- start. One row at most; deleting it makes the next start generate and print a new token.
CREATE TABLE admin_token (
    only_one   BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_one),
    token_hash TEXT    NOT NULL,
    created_us BIGINT  NOT NULL
);

-- Facts are never changed nor removed: row triggers refuse UPDATE and DELETE, a statement
-- trigger TRUNCATE (which row triggers do not see).
CREATE FUNCTION handoff_append_only() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
BEGIN
    RAISE EXCEPTION '%', TG_ARGV[0] USING ERRCODE = 'restrict_violation';
END
$$;

CREATE TRIGGER plans_append_only BEFORE UPDATE OR DELETE ON plans
    FOR EACH ROW EXECUTE FUNCTION handoff_append_only('plans are append-only');
CREATE TRIGGER plans_append_only_truncate BEFORE TRUNCATE ON plans
    FOR EACH STATEMENT EXECUTE FUNCTION handoff_append_only('plans are append-only');
CREATE TRIGGER devices_append_only BEFORE UPDATE OR DELETE ON devices
    FOR EACH ROW EXECUTE FUNCTION handoff_append_only('devices are append-only');
CREATE TRIGGER devices_append_only_truncate BEFORE TRUNCATE ON devices
    FOR EACH STATEMENT EXECUTE FUNCTION handoff_append_only('devices are append-only');
CREATE TRIGGER pings_append_only BEFORE UPDATE OR DELETE ON pings
    FOR EACH ROW EXECUTE FUNCTION handoff_append_only('pings are append-only');
CREATE TRIGGER pings_append_only_truncate BEFORE TRUNCATE ON pings
    FOR EACH STATEMENT EXECUTE FUNCTION handoff_append_only('pings are append-only');
CREATE TRIGGER custody_append_only BEFORE UPDATE OR DELETE ON custody
    FOR EACH ROW EXECUTE FUNCTION handoff_append_only('the custody log is append-only');
CREATE TRIGGER custody_append_only_truncate BEFORE TRUNCATE ON custody
    FOR EACH STATEMENT EXECUTE FUNCTION handoff_append_only('the custody log is append-only');
CREATE TRIGGER webhooks_append_only BEFORE UPDATE OR DELETE ON webhooks
    FOR EACH ROW EXECUTE FUNCTION handoff_append_only('webhooks are append-only');
CREATE TRIGGER webhooks_append_only_truncate BEFORE TRUNCATE ON webhooks
    FOR EACH STATEMENT EXECUTE FUNCTION handoff_append_only('webhooks are append-only');
CREATE TRIGGER webhook_deliveries_append_only BEFORE UPDATE OR DELETE ON webhook_deliveries
    FOR EACH ROW EXECUTE FUNCTION handoff_append_only('the webhook delivery log is append-only');
CREATE TRIGGER webhook_deliveries_append_only_truncate BEFORE TRUNCATE ON webhook_deliveries
    FOR EACH STATEMENT EXECUTE FUNCTION handoff_append_only('the webhook delivery log is append-only');
CREATE TRIGGER changes_append_only BEFORE UPDATE OR DELETE ON changes
    FOR EACH ROW EXECUTE FUNCTION handoff_append_only('the change feed is append-only');
CREATE TRIGGER changes_append_only_truncate BEFORE TRUNCATE ON changes
    FOR EACH STATEMENT EXECUTE FUNCTION handoff_append_only('the change feed is append-only');
