DROP TABLE consent_generations;
ALTER TABLE resource_heads DROP COLUMN service_event;
ALTER TABLE resource_versions DROP COLUMN service_event;
