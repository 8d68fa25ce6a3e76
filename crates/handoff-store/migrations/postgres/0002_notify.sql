-- Waking the other nodes: every transaction that adds changes notifies, at its commit, the
-- channel `handoff_changes:SCHEMA` (the store's schema, so that stores in other schemas of the
-- same database are not woken) with the newest change it added. A node LISTENs to it and reads
-- the feed on each notification; one missed (a reconnect) is found by its next periodic read.
CREATE FUNCTION handoff_notify_changes() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM pg_notify('handoff_changes:' || current_schema(), (SELECT max(seq) FROM added)::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER changes_notify AFTER INSERT ON changes
    REFERENCING NEW TABLE AS added
    FOR EACH STATEMENT EXECUTE FUNCTION handoff_notify_changes();
