-- The write path's B-trees, cut to what a query reads. Under ingest the single writer spent
-- about half its time writing the pages a transaction touched into the log, and each row of
-- these tables touched a page in every B-tree it lives in: a rowid table, its primary-key index
-- and a lookup index, each at a random place.
--
-- Index rows now belong to one version of their resource (`version`) and are never changed or
-- removed: a new version adds its own, and queries join the head to keep the current version's.
-- Nothing deletes them by resource any more, so they are keyed for lookup alone, and the table
-- is its own search index (WITHOUT ROWID: one B-tree instead of three). The heads and the data
-- keys, found only by their keys, become one B-tree each as well.
CREATE TABLE search_tokens_keyed (
    resource_type TEXT NOT NULL,
    id TEXT NOT NULL,
    param TEXT NOT NULL,
    token TEXT NOT NULL,
    patient TEXT,
    version BIGINT NOT NULL,
    PRIMARY KEY (resource_type, param, token, id, version)
) WITHOUT ROWID;
INSERT INTO search_tokens_keyed
    SELECT t.resource_type, t.id, t.param, t.token, t.patient, h.version
    FROM search_tokens t JOIN resource_heads h ON h.resource_type = t.resource_type AND h.id = t.id;
DROP TABLE search_tokens;
ALTER TABLE search_tokens_keyed RENAME TO search_tokens;

CREATE TABLE search_dates_keyed (
    resource_type TEXT NOT NULL,
    id TEXT NOT NULL,
    param TEXT NOT NULL,
    range_start BIGINT NOT NULL,          -- inclusive epoch seconds
    range_end BIGINT NOT NULL,
    patient TEXT,
    version BIGINT NOT NULL,
    PRIMARY KEY (resource_type, param, range_start, range_end, id, version)
) WITHOUT ROWID;
INSERT INTO search_dates_keyed
    SELECT d.resource_type, d.id, d.param, d.range_start, d.range_end, d.patient, h.version
    FROM search_dates d JOIN resource_heads h ON h.resource_type = d.resource_type AND h.id = d.id;
DROP TABLE search_dates;
ALTER TABLE search_dates_keyed RENAME TO search_dates;

CREATE TABLE resource_heads_keyed (
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
) WITHOUT ROWID;
INSERT INTO resource_heads_keyed
    SELECT resource_type, id, version, patient, security_labels, author_org, author_practitioner,
           last_updated, service_event
    FROM resource_heads;
DROP TABLE resource_heads;
ALTER TABLE resource_heads_keyed RENAME TO resource_heads;
-- By patient first: a new patient's first document adds a Patient and a Bundle head, and with
-- the type first their entries sat on two random pages of this index instead of one.
CREATE INDEX resource_heads_patient ON resource_heads (patient, resource_type);

CREATE TABLE data_keys_keyed (
    scope TEXT PRIMARY KEY NOT NULL,
    kek_id TEXT NOT NULL,
    wrapped_key BLOB NOT NULL,
    created_at BIGINT NOT NULL
) WITHOUT ROWID;
INSERT INTO data_keys_keyed SELECT scope, kek_id, wrapped_key, created_at FROM data_keys;
DROP TABLE data_keys;
ALTER TABLE data_keys_keyed RENAME TO data_keys;
