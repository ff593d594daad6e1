DROP INDEX data_keys_by_kek;
DROP TABLE key_versions;
