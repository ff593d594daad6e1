-- The service event (palvelutapahtuma) each version belongs to, as its bare OID: a patient may
-- deny a whole service event, and the decision reads it here, beside the labels, without
-- opening the body. An OID names a course of care at a provider; it carries no personal data.
ALTER TABLE resource_versions ADD COLUMN service_event TEXT;
ALTER TABLE resource_heads ADD COLUMN service_event TEXT;

-- A counter per patient, raised in the transaction of every write of one of their Consents.
-- Each gateway node caches a patient's compiled Consents under the generation it read, and
-- compares it on every decision: a Consent written through any node applies at once on all.
CREATE TABLE consent_generations (
    patient TEXT PRIMARY KEY NOT NULL,
    generation BIGINT NOT NULL
);
