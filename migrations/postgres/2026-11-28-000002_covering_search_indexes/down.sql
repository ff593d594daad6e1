DROP INDEX search_tokens_lookup;
CREATE INDEX search_tokens_lookup ON search_tokens (resource_type, param, token);
DROP INDEX search_dates_lookup;
CREATE INDEX search_dates_lookup ON search_dates (resource_type, param, range_start);
