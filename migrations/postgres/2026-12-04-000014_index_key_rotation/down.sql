DROP TABLE patient_aliases;
ALTER TABLE key_versions DROP COLUMN moved;
ALTER TABLE key_versions DROP COLUMN to_move;
