-- Searches select ids by (type, parameter, token) and dates by (type, parameter). With the id
-- inside the index they are answered from the index alone, and SQLite's planner (which has no
-- statistics) no longer prefers scanning the primary key of every row of the type, as it did.
DROP INDEX search_tokens_lookup;
CREATE INDEX search_tokens_lookup ON search_tokens (resource_type, param, token, id);
DROP INDEX search_dates_lookup;
CREATE INDEX search_dates_lookup ON search_dates (resource_type, param, range_start, range_end, id);
