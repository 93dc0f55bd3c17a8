-- File content (resources/file.py, store/files.py): where a file's bytes are, what was
-- stored (type and size are the stored ones), a checksum, and its sync into datasets.
ALTER TABLE files
    ADD COLUMN storage_key  text,
    ADD COLUMN checksum     text,
    ADD COLUMN uploaded_at  bigint,
    ADD COLUMN pending      jsonb,          -- an upload handed out and not yet seen: {type, size, name, expiresAt}
    ADD COLUMN source_url   text,           -- fetched from here; a sync fetches it again
    ADD COLUMN sync_status  text,           -- pending | syncing | synced | error
    ADD COLUMN sync_error   text,
    ADD COLUMN synced_at    bigint;

-- The records a file made in a dataset are replaced together (source = 'file:<id>').
CREATE INDEX records_source ON records (dataset_id, source) WHERE source IS NOT NULL;
CREATE INDEX dataset_files_file ON dataset_files (file_id);

-- A conversation's attachments: files uploaded to it, which its messages name.
CREATE TABLE attachments (
    id              text COLLATE "C" PRIMARY KEY,
    account_id      text COLLATE "C" NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    conversation_id text COLLATE "C" NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    file_id         text COLLATE "C" NOT NULL REFERENCES files (id) ON DELETE CASCADE,
    created_at      bigint NOT NULL,
    updated_at      bigint NOT NULL
);
CREATE INDEX attachments_conversation ON attachments (conversation_id, id);
