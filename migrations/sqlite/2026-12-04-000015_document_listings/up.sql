-- A document's line in a list (date, organisation, service event, kind, author), sealed under
-- the patient's data key beside the current version it was read from, and bound to that
-- version's metadata like its body. Listing a patient's documents opens these few hundred bytes
-- rather than every document. Documents stored before this migration have none: they are
-- listed from their bodies, and a re-index to a new index key writes theirs.
ALTER TABLE resource_heads ADD COLUMN listing BLOB;
