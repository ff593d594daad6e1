-- Only the current version's index rows return.
DELETE FROM search_tokens t USING resource_heads h
    WHERE h.resource_type = t.resource_type AND h.id = t.id AND h.version <> t.version;
ALTER TABLE search_tokens DROP CONSTRAINT search_tokens_pkey;
ALTER TABLE search_tokens DROP COLUMN version;
ALTER TABLE search_tokens ADD PRIMARY KEY (resource_type, id, param, token);
CREATE INDEX search_tokens_lookup ON search_tokens (resource_type, param, token, id);

DELETE FROM search_dates d USING resource_heads h
    WHERE h.resource_type = d.resource_type AND h.id = d.id AND h.version <> d.version;
ALTER TABLE search_dates DROP CONSTRAINT search_dates_pkey;
ALTER TABLE search_dates DROP COLUMN version;
ALTER TABLE search_dates ADD PRIMARY KEY (resource_type, id, param, range_start, range_end);
CREATE INDEX search_dates_lookup ON search_dates (resource_type, param, range_start, range_end, id);

ALTER TABLE resource_versions ALTER COLUMN body SET STORAGE EXTENDED;
ALTER TABLE resource_versions RESET (toast_tuple_target);

DROP INDEX resource_heads_patient;
CREATE INDEX resource_heads_patient ON resource_heads (resource_type, patient);
