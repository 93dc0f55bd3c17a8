-- Both official SDKs read a secret's `type` as always present.
UPDATE secrets SET type = 'plain' WHERE type IS NULL;
ALTER TABLE secrets ALTER COLUMN type SET DEFAULT 'plain';
