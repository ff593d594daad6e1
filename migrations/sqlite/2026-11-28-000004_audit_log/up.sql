-- The audit log (audit-log crate): one row per AuditEvent, in log order. `event` holds the
-- event's canonical bytes (identifiers and pseudonyms only); `leaf` is its RFC 6962 leaf hash and
-- `prev` the chain value of every entry before it, so a verifier can name one altered row. The
-- columns beside them are copies of what the event says, for the patients' and auditors'
-- searches; verification reads only seq, event, leaf and prev.
CREATE TABLE audit_entries (
    seq BIGINT PRIMARY KEY NOT NULL,      -- 0-based position: the leaf index
    recorded BIGINT NOT NULL,             -- epoch milliseconds
    patient TEXT,                         -- the patient pseudonym whose data it concerns
    organisation TEXT,                    -- the agent's organisation OID
    agent TEXT,                           -- the agent's Terhikki number, subject or pseudonym
    action TEXT NOT NULL,
    event BLOB NOT NULL,
    leaf BLOB NOT NULL,
    prev BLOB NOT NULL
);
CREATE INDEX audit_entries_patient ON audit_entries (patient, seq);
CREATE INDEX audit_entries_recorded ON audit_entries (recorded);

-- Signed checkpoints (C2SP signed notes): tree size, root and time, signed with a key kept
-- outside the database.
CREATE TABLE audit_checkpoints (
    size BIGINT PRIMARY KEY NOT NULL,
    note TEXT NOT NULL,
    created BIGINT NOT NULL
);

-- Where the next append starts: the Merkle frontier and the last entry's hashes. A cache of
-- what the entries say (a verifier never reads it); writers lock it so that appends are serial
-- across gateway nodes.
CREATE TABLE audit_head (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    size BIGINT NOT NULL,
    frontier BLOB NOT NULL,
    last_leaf BLOB NOT NULL,
    last_prev BLOB NOT NULL,
    checkpoint_size BIGINT NOT NULL,
    checkpoint_at BIGINT NOT NULL
);
INSERT INTO audit_head VALUES (1, 0, X'', X'', X'', 0, 0);

-- Insert-only for the gateway: nothing it runs may change or remove an entry or a checkpoint.
CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries
BEGIN SELECT RAISE(ABORT, 'the audit log is insert-only'); END;
CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries
BEGIN SELECT RAISE(ABORT, 'the audit log is insert-only'); END;
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'the audit log is insert-only'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'the audit log is insert-only'); END;
