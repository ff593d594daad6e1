-- The index by patient carries each head's version, so that a page of a patient's documents
-- joins it straight to the versions' primary key without reading the heads themselves.
CREATE INDEX resource_heads_patient_page ON resource_heads (patient, resource_type, last_updated, id, version);
DROP INDEX resource_heads_patient_updated;
