//! The SQLite schema as a list of migrations, applied in order at open. `PRAGMA user_version`
//! records how many have run, so a file is upgraded in place and a file from a newer build is
//! refused rather than misread. Never edit a released migration: append a new one.
//!
//! Conventions: instants are INTEGER microseconds since the Unix epoch, UTC (`*_us`); floats are
//! REAL; tables are STRICT (SQLite checks column types) and append-only (triggers refuse UPDATE
//! and DELETE, which is what lets the custody log and the ping history be trusted).

use rusqlite::{Connection, TransactionBehavior};

use crate::error::{Result, StoreError};

/// Each entry takes the schema from version `index` to `index + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: plans, devices, pings, custody.
    r"
    CREATE TABLE plans (
        event_id   TEXT    NOT NULL,
        version    INTEGER NOT NULL CHECK (version >= 1),
        plan_json  TEXT    NOT NULL,
        plan_hash  TEXT    NOT NULL,
        created_us INTEGER NOT NULL,
        PRIMARY KEY (event_id, version)
    ) STRICT;

    CREATE TABLE devices (
        event_id   TEXT    NOT NULL,
        device_id  TEXT    NOT NULL,
        carrier    TEXT    NOT NULL,
        token_hash TEXT    NOT NULL UNIQUE,
        created_us INTEGER NOT NULL,
        PRIMARY KEY (event_id, device_id)
    ) STRICT;

    -- seq is the rowid: rows are never deleted, so it only grows, in arrival order.
    CREATE TABLE pings (
        seq         INTEGER PRIMARY KEY,
        event_id    TEXT    NOT NULL,
        device_id   TEXT    NOT NULL,
        t_us        INTEGER NOT NULL,
        lon         REAL    NOT NULL,
        lat         REAL    NOT NULL,
        acc_m       REAL,
        speed_mps   REAL,
        heading_deg REAL,
        alt_m       REAL,
        batt_pct    REAL,
        received_us INTEGER NOT NULL,
        -- A resent ping (same device time) is a duplicate: ingest is idempotent.
        UNIQUE (event_id, device_id, t_us)
    ) STRICT;
    -- Rebuilding an event's live state reads its pings in device-time order.
    CREATE INDEX pings_by_event_time ON pings (event_id, t_us);

    CREATE TABLE custody (
        seq        INTEGER PRIMARY KEY,
        event_id   TEXT    NOT NULL,
        relay_id   TEXT    NOT NULL,
        entry_json TEXT    NOT NULL,
        hash       TEXT    NOT NULL,
        prev_hash  TEXT    NOT NULL,
        created_us INTEGER NOT NULL,
        -- Two entries can never follow the same one: a handoff wins exactly once.
        UNIQUE (event_id, relay_id, prev_hash),
        UNIQUE (event_id, relay_id, hash)
    ) STRICT;

    CREATE TRIGGER plans_append_only_update BEFORE UPDATE ON plans
        BEGIN SELECT RAISE(ABORT, 'plans are append-only'); END;
    CREATE TRIGGER plans_append_only_delete BEFORE DELETE ON plans
        BEGIN SELECT RAISE(ABORT, 'plans are append-only'); END;
    CREATE TRIGGER devices_append_only_update BEFORE UPDATE ON devices
        BEGIN SELECT RAISE(ABORT, 'devices are append-only'); END;
    CREATE TRIGGER devices_append_only_delete BEFORE DELETE ON devices
        BEGIN SELECT RAISE(ABORT, 'devices are append-only'); END;
    CREATE TRIGGER pings_append_only_update BEFORE UPDATE ON pings
        BEGIN SELECT RAISE(ABORT, 'pings are append-only'); END;
    CREATE TRIGGER pings_append_only_delete BEFORE DELETE ON pings
        BEGIN SELECT RAISE(ABORT, 'pings are append-only'); END;
    CREATE TRIGGER custody_append_only_update BEFORE UPDATE ON custody
        BEGIN SELECT RAISE(ABORT, 'the custody log is append-only'); END;
    CREATE TRIGGER custody_append_only_delete BEFORE DELETE ON custody
        BEGIN SELECT RAISE(ABORT, 'the custody log is append-only'); END;
    ",
    // 2: webhooks and their delivery log.
    r"
    CREATE TABLE webhooks (
        event_id   TEXT    NOT NULL,
        webhook_id TEXT    NOT NULL,
        url        TEXT    NOT NULL,
        -- The HMAC key, kept as given: signing needs it (unlike a token, it cannot be hashed).
        secret     TEXT    NOT NULL,
        -- Comma-separated kinds of notification; '' means every kind.
        kinds      TEXT    NOT NULL,
        created_us INTEGER NOT NULL,
        PRIMARY KEY (event_id, webhook_id)
    ) STRICT;

    -- One row per attempt: a notification retried three times is three rows with one
    -- delivery_id. status is the receiver's HTTP status (NULL when it never answered).
    CREATE TABLE webhook_deliveries (
        seq         INTEGER PRIMARY KEY,
        event_id    TEXT    NOT NULL,
        webhook_id  TEXT    NOT NULL,
        delivery_id TEXT    NOT NULL,
        kind        TEXT    NOT NULL,
        attempt     INTEGER NOT NULL CHECK (attempt >= 1),
        status      INTEGER,
        error       TEXT,
        at_us       INTEGER NOT NULL
    ) STRICT;
    -- The delivery log of an event is read newest first.
    CREATE INDEX webhook_deliveries_by_event ON webhook_deliveries (event_id, seq);

    CREATE TRIGGER webhooks_append_only_update BEFORE UPDATE ON webhooks
        BEGIN SELECT RAISE(ABORT, 'webhooks are append-only'); END;
    CREATE TRIGGER webhooks_append_only_delete BEFORE DELETE ON webhooks
        BEGIN SELECT RAISE(ABORT, 'webhooks are append-only'); END;
    CREATE TRIGGER webhook_deliveries_append_only_update BEFORE UPDATE ON webhook_deliveries
        BEGIN SELECT RAISE(ABORT, 'the webhook delivery log is append-only'); END;
    CREATE TRIGGER webhook_deliveries_append_only_delete BEFORE DELETE ON webhook_deliveries
        BEGIN SELECT RAISE(ABORT, 'the webhook delivery log is append-only'); END;
    ",
    // 3: the live engine pages an event's pings in arrival order (start-up, catch-up).
    r"
    CREATE INDEX pings_by_event_seq ON pings (event_id, seq);
    ",
    // 4: a device is bound to a carrier of one relay (race mode: every team has a "Runner 1").
    r"
    ALTER TABLE devices ADD COLUMN relay_id TEXT;
    ",
    // 5: the newest saved state of each event's live engine. Derived data, not a fact: one row
    // per event, replaced as the engine moves on (so not append-only), and dropping it costs
    // only a full replay at the next start.
    r"
    CREATE TABLE engine_checkpoints (
        event_id     TEXT    PRIMARY KEY,
        plan_version INTEGER NOT NULL,
        plan_hash    TEXT    NOT NULL,
        format       INTEGER NOT NULL,
        -- Every ping of the event with seq <= cursor is reflected in the state.
        cursor       INTEGER NOT NULL,
        created_us   INTEGER NOT NULL,
        state        BLOB    NOT NULL
    ) STRICT;
    ",
    // 6: the unit of a device's OsmAnd `speed`, when the operator registered it (NULL: detect
    // it from the device's fixes).
    r"
    ALTER TABLE devices ADD COLUMN speed_unit TEXT CHECK (speed_unit IN ('knots', 'mps', 'kmh'));
    ",
    // 7: the change feed. One row per input, written in the same transaction as the input's
    // own row, so `seq` numbers every input in commit order across events and kinds. The row
    // it names: `row_seq` is pings.seq / custody.seq / plans.version, `row_id` is
    // devices.device_id / webhooks.webhook_id (keys that VACUUM cannot renumber, unlike a
    // rowid). The pings of one event stored by one write are one change, the seqs
    // `row_seq..=last_seq` (they are consecutive: one writer, rows never deleted), so a batch
    // of 1,000 pings costs one row here, not 1,000. Inputs stored before this migration are numbered first, in the order they were
    // stamped (plans, devices and webhooks before the pings and custody entries of the same
    // instant, which are in their own seq order).
    r"
    CREATE TABLE changes (
        seq      INTEGER PRIMARY KEY,
        kind     TEXT    NOT NULL
                 CHECK (kind IN ('plan', 'device', 'ping', 'custody', 'webhook')),
        event_id TEXT    NOT NULL,
        row_seq  INTEGER,
        last_seq INTEGER,
        row_id   TEXT,
        CHECK ((kind IN ('plan', 'ping', 'custody')) = (row_seq IS NOT NULL)),
        CHECK ((kind = 'ping') = (last_seq IS NOT NULL AND last_seq >= row_seq)),
        CHECK ((kind IN ('device', 'webhook')) = (row_id IS NOT NULL))
    ) STRICT;

    INSERT INTO changes (kind, event_id, row_seq, last_seq, row_id)
    SELECT kind, event_id, row_seq, last_seq, row_id FROM (
        SELECT 'plan' AS kind, event_id, version AS row_seq, NULL AS last_seq, NULL AS row_id,
               created_us AS at_us, 0 AS rank FROM plans
        UNION ALL
        SELECT 'device', event_id, NULL, NULL, device_id, created_us, 1 FROM devices
        UNION ALL
        SELECT 'webhook', event_id, NULL, NULL, webhook_id, created_us, 2 FROM webhooks
        UNION ALL
        SELECT 'custody', event_id, seq, NULL, NULL, created_us, 3 FROM custody
        UNION ALL
        SELECT 'ping', event_id, seq, seq, NULL, received_us, 4 FROM pings
    )
    ORDER BY at_us, rank, row_seq, row_id;

    CREATE TRIGGER changes_append_only_update BEFORE UPDATE ON changes
        BEGIN SELECT RAISE(ABORT, 'the change feed is append-only'); END;
    CREATE TRIGGER changes_append_only_delete BEFORE DELETE ON changes
        BEGIN SELECT RAISE(ABORT, 'the change feed is append-only'); END;
    ",
    // 8: state that several servers must share (PostgreSQL's migration 0003 is the same): the
    // givers' one-time handoff codes, and the webhook outbox. Neither is a fact (codes are
    // replaced, counted and deleted; a notification's attempts and schedule move on), so
    // neither is append-only: the facts are the custody log and the delivery log.
    r"
    -- One code per step (relay, from leg): a new code replaces the old. code_hash is a hash of
    -- the code, never the code; chain_len is the length of the relay's custody log when the
    -- code was issued (an entry for the step at or after it spends the code).
    CREATE TABLE handoff_codes (
        event_id   TEXT    NOT NULL,
        relay_id   TEXT    NOT NULL,
        from_leg   INTEGER NOT NULL CHECK (from_leg >= 0),
        code_hash  TEXT    NOT NULL,
        device_id  TEXT    NOT NULL,
        chain_len  INTEGER NOT NULL CHECK (chain_len >= 0),
        expires_us INTEGER NOT NULL,
        attempts   INTEGER NOT NULL CHECK (attempts >= 0),
        created_us INTEGER NOT NULL,
        PRIMARY KEY (event_id, relay_id, from_leg)
    ) STRICT;

    -- One row per notification to one webhook, queued once: the dedupe key is derived from the
    -- fact by every server alike, so a second server queueing it changes nothing. next_us is
    -- when the next attempt is due (NULL once delivered or given up: the row stays, so the key
    -- is never queued again); claimed_until_us, until when a server holds it for an attempt.
    CREATE TABLE webhook_outbox (
        seq              INTEGER PRIMARY KEY,
        event_id         TEXT    NOT NULL,
        webhook_id       TEXT    NOT NULL,
        dedupe_key       TEXT    NOT NULL,
        delivery_id      TEXT    NOT NULL,
        kind             TEXT    NOT NULL,
        body             TEXT    NOT NULL,
        attempts         INTEGER NOT NULL CHECK (attempts >= 0),
        next_us          INTEGER,
        claimed_until_us INTEGER,
        created_us       INTEGER NOT NULL,
        UNIQUE (event_id, webhook_id, dedupe_key)
    ) STRICT;
    -- What the delivery worker looks for: the notifications still to attempt, by due time.
    CREATE INDEX webhook_outbox_due ON webhook_outbox (next_us) WHERE next_us IS NOT NULL;
    ",
    // 9: a device's token re-issued or revoked (PostgreSQL's migration 0004 is the same). The
    // registration row stays as it was; each change of token is a row here, and the last one
    // per device is in force (token_hash NULL: revoked). `devices_now` is every device with
    // the token in force and when it was set. A token hash is never used twice: not here
    // (UNIQUE; NULLs are distinct), and the store checks the registrations' too.
    r"
    CREATE TABLE device_tokens (
        seq        INTEGER PRIMARY KEY,
        event_id   TEXT    NOT NULL,
        device_id  TEXT    NOT NULL,
        token_hash TEXT    UNIQUE,
        created_us INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX device_tokens_by_device ON device_tokens (event_id, device_id, seq);
    CREATE TRIGGER device_tokens_append_only_update BEFORE UPDATE ON device_tokens
        BEGIN SELECT RAISE(ABORT, 'device tokens are append-only'); END;
    CREATE TRIGGER device_tokens_append_only_delete BEFORE DELETE ON device_tokens
        BEGIN SELECT RAISE(ABORT, 'device tokens are append-only'); END;

    CREATE VIEW devices_now AS
    SELECT d.event_id, d.device_id, d.carrier,
           CASE WHEN t.seq IS NULL THEN d.token_hash ELSE t.token_hash END AS token_hash,
           d.created_us, d.relay_id, d.speed_unit,
           COALESCE(t.created_us, d.created_us) AS token_us
    FROM devices d
    LEFT JOIN device_tokens t ON t.seq = (
        SELECT MAX(x.seq) FROM device_tokens x
        WHERE x.event_id = d.event_id AND x.device_id = d.device_id
    );
    ",
];

/// The schema version this build writes.
pub(super) fn latest_version() -> i64 {
    // A handful of migrations: the count always fits.
    i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX)
}

fn user_version(conn: &Connection) -> Result<i64> {
    Ok(conn.pragma_query_value(None, "user_version", |row| row.get(0))?)
}

/// Brings the schema up to [`latest_version`], one transaction per migration.
pub(super) fn migrate(conn: &mut Connection) -> Result<()> {
    migrate_to(conn, latest_version())
}

/// Applies the migrations up to schema version `last` (a file as an older build left it, for
/// the tests of upgrades).
pub(super) fn migrate_to(conn: &mut Connection, last: i64) -> Result<()> {
    let known = latest_version();
    let last = usize::try_from(last).unwrap_or(0);
    for (index, sql) in MIGRATIONS.iter().enumerate().take(last) {
        let target = i64::try_from(index + 1).unwrap_or(i64::MAX);
        // IMMEDIATE, and the version re-read inside: two processes opening one file at once
        // apply each migration exactly once.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let found = user_version(&tx)?;
        if found > known {
            return Err(StoreError::SchemaTooNew { found, known });
        }
        if found >= target {
            continue;
        }
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", target)?;
        tx.commit()?;
    }
    let found = user_version(conn)?;
    if found > known {
        return Err(StoreError::SchemaTooNew { found, known });
    }
    Ok(())
}
