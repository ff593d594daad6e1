-- One index row per identifier instead of two. Each identifier was filed under two tokens, one
-- for `system|value` and one for `value` in any system, and during ingest each of those rows
-- put another random page of this table into the writer's commit. A new row is filed under
-- the any-system token and carries the `system|value` token beside it (`system_token`): a
-- search for `value` reads the key, one for `system|value` reads the key and checks the column.
--
-- Rows written before this migration keep their form (`system_token` NULL, either token as the
-- key): tokens are keyed hashes, so they cannot be paired up again without the values, and
-- every query reads both forms (`store::TokenMatch`).
ALTER TABLE search_tokens ADD COLUMN system_token TEXT;
