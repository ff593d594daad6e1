-- The versions of the keys: the key-encryption key's ('kek') and, later, the index key's. The
-- newest version that is not retired is the one in force; `rewrapped_at` is set when a rotation
-- to a version has rewrapped every data key, and `retired_at` when an operator retires it.
CREATE TABLE key_versions (
    purpose TEXT NOT NULL,
    version BIGINT NOT NULL,
    key_id TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    rewrapped_at BIGINT,
    retired_at BIGINT,
    PRIMARY KEY (purpose, version)
);
-- The data keys one key-encryption key wraps, in order: a rotation reads them in batches, and
-- retiring a version asks whether any is left, both through this index.
CREATE INDEX data_keys_by_kek ON data_keys (kek_id, scope);
