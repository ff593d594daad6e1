DROP TABLE search_dates;
DROP TABLE search_tokens;
DROP TABLE resource_heads;
DROP TABLE resource_versions;
DROP TABLE data_keys;
