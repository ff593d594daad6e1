-- Index rows now belong to one version of their resource (`version`) and are never changed or
-- removed: a new version adds its own, and queries join the head to keep the current version's.
-- Nothing deletes them by resource any more, so each table keeps one B-tree, keyed for lookup
-- (its primary key), instead of a primary key by resource and a lookup index beside it: one
-- index insert a row instead of two, and no dead tuples from updates.
ALTER TABLE search_tokens ADD COLUMN version BIGINT;
UPDATE search_tokens t SET version = h.version
    FROM resource_heads h WHERE h.resource_type = t.resource_type AND h.id = t.id;
DELETE FROM search_tokens WHERE version IS NULL;
ALTER TABLE search_tokens ALTER COLUMN version SET NOT NULL;
ALTER TABLE search_tokens DROP CONSTRAINT search_tokens_pkey;
DROP INDEX search_tokens_lookup;
ALTER TABLE search_tokens ADD PRIMARY KEY (resource_type, param, token, id, version);

ALTER TABLE search_dates ADD COLUMN version BIGINT;
UPDATE search_dates d SET version = h.version
    FROM resource_heads h WHERE h.resource_type = d.resource_type AND h.id = d.id;
DELETE FROM search_dates WHERE version IS NULL;
ALTER TABLE search_dates ALTER COLUMN version SET NOT NULL;
ALTER TABLE search_dates DROP CONSTRAINT search_dates_pkey;
DROP INDEX search_dates_lookup;
ALTER TABLE search_dates ADD PRIMARY KEY (resource_type, param, range_start, range_end, id, version);

-- A version's body is ciphertext and does not compress: PostgreSQL no longer tries, and keeps a
-- body in line whenever its row fits a page (by default it moves anything over 2 kB out of line,
-- into TOAST chunks that are each a heap row and an index entry of their own).
ALTER TABLE resource_versions ALTER COLUMN body SET STORAGE EXTERNAL;
ALTER TABLE resource_versions SET (toast_tuple_target = 8160);

-- By patient first: a new patient's first document adds a Patient and a Bundle head, and with
-- the type first their entries sat on two random pages of this index instead of one.
DROP INDEX resource_heads_patient;
CREATE INDEX resource_heads_patient ON resource_heads (patient, resource_type);
