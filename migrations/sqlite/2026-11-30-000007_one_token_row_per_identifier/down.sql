-- Back to two rows per identifier: each `system_token` becomes a row of its own.
INSERT OR IGNORE INTO search_tokens (resource_type, id, param, token, patient, version)
    SELECT resource_type, id, param, system_token, patient, version
    FROM search_tokens WHERE system_token IS NOT NULL;
ALTER TABLE search_tokens DROP COLUMN system_token;
