-- The names a re-index moved a patient from (`earlier`), by the name they have now (`patient`):
-- the audit log is never rewritten, so its entries keep the old names, and an auditor who asks
-- for a stored Patient's entries is given every name it had. Both are pseudonyms.
CREATE TABLE patient_aliases (
    patient TEXT NOT NULL,
    earlier TEXT NOT NULL,
    PRIMARY KEY (patient, earlier)
);
-- A re-index's progress, as the operator's command records it after each batch: patients moved,
-- of how many (`/metrics` shows them without counting the patients itself).
ALTER TABLE key_versions ADD COLUMN moved BIGINT;
ALTER TABLE key_versions ADD COLUMN to_move BIGINT;
