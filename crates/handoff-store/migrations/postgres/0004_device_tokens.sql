-- A device's token re-issued or revoked (SQLite's migration 9 is the same). The registration
-- row stays as it was; each change of token is a row here, and the last one per device (by seq)
-- is in force (token_hash NULL: revoked). `devices_now` is every device with the token in force
-- and when it was set. A token hash is never used twice: not here (UNIQUE; NULLs are distinct),
-- and the store checks the registrations' too. Each change is also a `device` change of the
-- feed, in the same transaction.
CREATE TABLE device_tokens (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id   TEXT   NOT NULL,
    device_id  TEXT   NOT NULL,
    token_hash TEXT,
    created_us BIGINT NOT NULL,
    CONSTRAINT device_tokens_token_hash_key UNIQUE (token_hash)
);
CREATE INDEX device_tokens_by_device ON device_tokens (event_id, device_id, seq);
CREATE TRIGGER device_tokens_append_only BEFORE UPDATE OR DELETE ON device_tokens
    FOR EACH ROW EXECUTE FUNCTION handoff_append_only('device tokens are append-only');
CREATE TRIGGER device_tokens_append_only_truncate BEFORE TRUNCATE ON device_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION handoff_append_only('device tokens are append-only');

CREATE VIEW devices_now AS
SELECT d.event_id, d.device_id, d.carrier, d.relay_id,
       CASE WHEN t.seq IS NULL THEN d.token_hash ELSE t.token_hash END AS token_hash,
       d.speed_unit, d.created_us, COALESCE(t.created_us, d.created_us) AS token_us
FROM devices d
LEFT JOIN LATERAL (
    SELECT x.seq, x.token_hash, x.created_us FROM device_tokens x
    WHERE x.event_id = d.event_id AND x.device_id = d.device_id
    ORDER BY x.seq DESC LIMIT 1
) t ON true;
