CREATE INDEX resource_heads_patient ON resource_heads (patient, resource_type);
DROP INDEX resource_heads_patient_updated;
