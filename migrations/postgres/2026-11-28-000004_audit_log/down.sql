DROP TABLE audit_head;
DROP TABLE audit_checkpoints;
DROP TABLE audit_entries;
DROP FUNCTION audit_insert_only();
