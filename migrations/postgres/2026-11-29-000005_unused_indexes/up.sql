-- No query reads either index: history is read by (type, id) through the primary key, search by
-- patient goes through resource_heads_patient, and searches order their matches themselves.
-- Each cost a random B-tree insert on every write: on SQLite a page of its own in the commit's
-- write-ahead log, on PostgreSQL an index insert (and after a checkpoint a full page image).
DROP INDEX resource_versions_patient;
DROP INDEX resource_heads_updated;
