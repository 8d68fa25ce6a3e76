-- State that several nodes must share (SQLite's migration 8 is the same): the givers' one-time
-- handoff codes, so a code asked for on one node is accepted on any, and the webhook outbox, so
-- each notification is delivered once by the cluster and retried by whichever node is alive.
-- Neither is a fact (codes are replaced, counted and deleted; a notification's attempts and
-- schedule move on), so neither is append-only: the facts are the custody log and the
-- delivery log.

-- One code per step (relay, from leg): a new code replaces the old. code_hash is a hash of the
-- code, never the code; chain_len is the length of the relay's custody log when the code was
-- issued (an entry for the step at or after it spends the code). Wrong attempts are counted
-- here with one atomic UPDATE, so attempts on several nodes add up.
CREATE TABLE handoff_codes (
    event_id   TEXT   NOT NULL,
    relay_id   TEXT   NOT NULL,
    from_leg   BIGINT NOT NULL CHECK (from_leg >= 0),
    code_hash  TEXT   NOT NULL,
    device_id  TEXT   NOT NULL,
    chain_len  BIGINT NOT NULL CHECK (chain_len >= 0),
    expires_us BIGINT NOT NULL,
    attempts   BIGINT NOT NULL CHECK (attempts >= 0),
    created_us BIGINT NOT NULL,
    PRIMARY KEY (event_id, relay_id, from_leg)
);

-- One row per notification to one webhook, queued once: the dedupe key is derived from the fact
-- by every node alike, so a second node queueing it changes nothing (ON CONFLICT DO NOTHING).
-- next_us is when the next attempt is due (NULL once delivered or given up: the row stays, so
-- the key is never queued again); claimed_until_us, until when a node holds it for an attempt
-- (claimed with FOR UPDATE SKIP LOCKED, so two nodes never claim one row; a dead node's claim
-- runs out and another node attempts it).
CREATE TABLE webhook_outbox (
    seq              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id         TEXT   NOT NULL,
    webhook_id       TEXT   NOT NULL,
    dedupe_key       TEXT   NOT NULL,
    delivery_id      TEXT   NOT NULL,
    kind             TEXT   NOT NULL,
    body             TEXT   NOT NULL,
    attempts         BIGINT NOT NULL CHECK (attempts >= 0),
    next_us          BIGINT,
    claimed_until_us BIGINT,
    created_us       BIGINT NOT NULL,
    CONSTRAINT webhook_outbox_key UNIQUE (event_id, webhook_id, dedupe_key)
);
-- What the delivery workers look for: the notifications still to attempt, by due time.
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_us) WHERE next_us IS NOT NULL;
