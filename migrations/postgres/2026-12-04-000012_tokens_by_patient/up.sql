-- A patient's search tokens, found to remove them at the end of retention: the tokens are keyed
-- hashes of identifiers, and one left behind would still answer whether a record of that
-- identifier was ever kept.
CREATE INDEX search_tokens_patient ON search_tokens (patient) WHERE patient IS NOT NULL;
