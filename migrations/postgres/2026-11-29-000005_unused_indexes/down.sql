CREATE INDEX resource_versions_patient ON resource_versions (patient);
CREATE INDEX resource_heads_updated ON resource_heads (resource_type, last_updated);
