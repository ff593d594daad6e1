-- A patient's heads of one type, newest first, read from the index alone: the portal pages a
-- patient's documents in the database (the time of the last change is in the index, so neither
-- the order nor the count touches the table), and every search by patient keeps the prefix it
-- used.
CREATE INDEX resource_heads_patient_updated ON resource_heads (patient, resource_type, last_updated);
DROP INDEX resource_heads_patient;
