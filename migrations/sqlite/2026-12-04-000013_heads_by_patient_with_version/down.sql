CREATE INDEX resource_heads_patient_updated ON resource_heads (patient, resource_type, last_updated);
DROP INDEX resource_heads_patient_page;
