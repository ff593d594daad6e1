-- Back to rowid tables with an index per lookup; only the current version's index rows return.
CREATE TABLE search_tokens_rowid (
    resource_type TEXT NOT NULL,
    id TEXT NOT NULL,
    param TEXT NOT NULL,
    token TEXT NOT NULL,
    patient TEXT,
    PRIMARY KEY (resource_type, id, param, token)
);
INSERT INTO search_tokens_rowid
    SELECT t.resource_type, t.id, t.param, t.token, t.patient
    FROM search_tokens t JOIN resource_heads h
      ON h.resource_type = t.resource_type AND h.id = t.id AND h.version = t.version;
DROP TABLE search_tokens;
ALTER TABLE search_tokens_rowid RENAME TO search_tokens;
CREATE INDEX search_tokens_lookup ON search_tokens (resource_type, param, token, id);

CREATE TABLE search_dates_rowid (
    resource_type TEXT NOT NULL,
    id TEXT NOT NULL,
    param TEXT NOT NULL,
    range_start BIGINT NOT NULL,
    range_end BIGINT NOT NULL,
    patient TEXT,
    PRIMARY KEY (resource_type, id, param, range_start, range_end)
);
INSERT INTO search_dates_rowid
    SELECT d.resource_type, d.id, d.param, d.range_start, d.range_end, d.patient
    FROM search_dates d JOIN resource_heads h
      ON h.resource_type = d.resource_type AND h.id = d.id AND h.version = d.version;
DROP TABLE search_dates;
ALTER TABLE search_dates_rowid RENAME TO search_dates;
CREATE INDEX search_dates_lookup ON search_dates (resource_type, param, range_start, range_end, id);

CREATE TABLE resource_heads_rowid (
    resource_type TEXT NOT NULL,
    id TEXT NOT NULL,
    version BIGINT NOT NULL,
    patient TEXT,
    security_labels TEXT NOT NULL,
    author_org TEXT,
    author_practitioner TEXT,
    last_updated BIGINT NOT NULL,
    service_event TEXT,
    PRIMARY KEY (resource_type, id)
);
INSERT INTO resource_heads_rowid SELECT * FROM resource_heads;
DROP TABLE resource_heads;
ALTER TABLE resource_heads_rowid RENAME TO resource_heads;
CREATE INDEX resource_heads_patient ON resource_heads (resource_type, patient);

CREATE TABLE data_keys_rowid (
    scope TEXT PRIMARY KEY NOT NULL,
    kek_id TEXT NOT NULL,
    wrapped_key BLOB NOT NULL,
    created_at BIGINT NOT NULL
);
INSERT INTO data_keys_rowid SELECT * FROM data_keys;
DROP TABLE data_keys;
ALTER TABLE data_keys_rowid RENAME TO data_keys;
