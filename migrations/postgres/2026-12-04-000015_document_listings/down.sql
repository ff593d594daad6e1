ALTER TABLE resource_heads DROP COLUMN listing;
