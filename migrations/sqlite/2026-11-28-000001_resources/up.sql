-- Data keys, wrapped by the key-encryption key that lives outside the database.
CREATE TABLE data_keys (
    scope TEXT PRIMARY KEY NOT NULL,      -- a patient pseudonym, or 'shared' for non-patient resources
    kek_id TEXT NOT NULL,
    wrapped_key BLOB NOT NULL,
    created_at BIGINT NOT NULL
);

-- Every version of every resource; the body is AES-256-GCM ciphertext. The metadata beside it
-- (patient pseudonym, security labels) is what consent decisions read without decrypting.
CREATE TABLE resource_versions (
    resource_type TEXT NOT NULL,
    id TEXT NOT NULL,
    version BIGINT NOT NULL,
    patient TEXT,
    key_scope TEXT NOT NULL,
    security_labels TEXT NOT NULL,
    author_org TEXT,                      -- organisation OID of the writer
    author_practitioner TEXT,             -- Terhikki number of the writer
    last_updated BIGINT NOT NULL,         -- epoch milliseconds
    method TEXT NOT NULL,                 -- POST or PUT, for history entries
    body BLOB NOT NULL,
    PRIMARY KEY (resource_type, id, version)
);
CREATE INDEX resource_versions_patient ON resource_versions (patient);

-- The current version of each resource: what reads and searches start from.
CREATE TABLE resource_heads (
    resource_type TEXT NOT NULL,
    id TEXT NOT NULL,
    version BIGINT NOT NULL,
    patient TEXT,
    security_labels TEXT NOT NULL,
    author_org TEXT,
    author_practitioner TEXT,
    last_updated BIGINT NOT NULL,
    PRIMARY KEY (resource_type, id)
);
CREATE INDEX resource_heads_patient ON resource_heads (resource_type, patient);
CREATE INDEX resource_heads_updated ON resource_heads (resource_type, last_updated);

-- Search index of the current versions. Identifiers appear only as keyed HMAC tokens.
CREATE TABLE search_tokens (
    resource_type TEXT NOT NULL,
    id TEXT NOT NULL,
    param TEXT NOT NULL,
    token TEXT NOT NULL,
    patient TEXT,
    PRIMARY KEY (resource_type, id, param, token)
);
CREATE INDEX search_tokens_lookup ON search_tokens (resource_type, param, token);

CREATE TABLE search_dates (
    resource_type TEXT NOT NULL,
    id TEXT NOT NULL,
    param TEXT NOT NULL,
    range_start BIGINT NOT NULL,          -- inclusive epoch seconds
    range_end BIGINT NOT NULL,
    patient TEXT,
    PRIMARY KEY (resource_type, id, param, range_start, range_end)
);
CREATE INDEX search_dates_lookup ON search_dates (resource_type, param, range_start);
