-- The audit log (audit-log crate): see the SQLite migration for the columns.
CREATE TABLE audit_entries (
    seq BIGINT PRIMARY KEY NOT NULL,
    recorded BIGINT NOT NULL,
    patient TEXT,
    organisation TEXT,
    agent TEXT,
    action TEXT NOT NULL,
    event BYTEA NOT NULL,
    leaf BYTEA NOT NULL,
    prev BYTEA NOT NULL
);
CREATE INDEX audit_entries_patient ON audit_entries (patient, seq);
CREATE INDEX audit_entries_recorded ON audit_entries (recorded);

CREATE TABLE audit_checkpoints (
    size BIGINT PRIMARY KEY NOT NULL,
    note TEXT NOT NULL,
    created BIGINT NOT NULL
);

-- Writers lock this row (SELECT ... FOR UPDATE) so that appends are serial across nodes.
CREATE TABLE audit_head (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    size BIGINT NOT NULL,
    frontier BYTEA NOT NULL,
    last_leaf BYTEA NOT NULL,
    last_prev BYTEA NOT NULL,
    checkpoint_size BIGINT NOT NULL,
    checkpoint_at BIGINT NOT NULL
);
INSERT INTO audit_head VALUES (1, 0, '\x'::bytea, '\x'::bytea, '\x'::bytea, 0, 0);

-- Insert-only: a trigger refuses every change and removal, whoever runs it (grants do not bind
-- a table's owner; a deployment that connects as another role also revokes them, below).
CREATE FUNCTION audit_insert_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit log is insert-only';
END
$$;
CREATE TRIGGER audit_entries_insert_only BEFORE UPDATE OR DELETE ON audit_entries
    FOR EACH ROW EXECUTE FUNCTION audit_insert_only();
CREATE TRIGGER audit_entries_no_truncate BEFORE TRUNCATE ON audit_entries
    FOR EACH STATEMENT EXECUTE FUNCTION audit_insert_only();
CREATE TRIGGER audit_checkpoints_insert_only BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_insert_only();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_insert_only();
REVOKE UPDATE, DELETE, TRUNCATE ON audit_entries, audit_checkpoints FROM PUBLIC;
