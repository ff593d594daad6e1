-- Harvesting detection. A mark records that a principal (a practitioner, an organisation, a
-- client certificate, or a practitioner in an emergency) reached a patient in a minute: one row
-- per (principal, minute, patient), however often it was read then. Counting a principal's
-- distinct patients over the window reads its own marks only. Marks older than the window are
-- deleted, a minute at a time; they are not the audit log, which keeps every access.
CREATE TABLE reach_marks (
    principal TEXT NOT NULL,
    minute BIGINT NOT NULL,               -- epoch minutes
    patient TEXT NOT NULL,                -- pseudonym
    withheld BOOLEAN NOT NULL,            -- true when this first sighting released nothing
    PRIMARY KEY (principal, minute, patient)
) WITHOUT ROWID;
CREATE INDEX reach_marks_minute ON reach_marks (minute);

-- An alert: a principal crossed a threshold. Active until cleared by an auditor or, when
-- `until` is set, until then. At most one active alert per principal (a second node raising the
-- same alert finds the first).
CREATE TABLE access_alerts (
    id TEXT PRIMARY KEY NOT NULL,
    principal TEXT NOT NULL,
    organisation TEXT,
    raised_at BIGINT NOT NULL,
    until BIGINT,
    patients BIGINT NOT NULL,
    withheld BIGINT NOT NULL,
    threshold TEXT NOT NULL,
    cleared_at BIGINT,
    cleared_by TEXT,
    clear_reason TEXT
);
CREATE UNIQUE INDEX access_alerts_one_active ON access_alerts (principal) WHERE cleared_at IS NULL;
CREATE INDEX access_alerts_raised ON access_alerts (raised_at);
CREATE INDEX access_alerts_organisation ON access_alerts (organisation, raised_at);
