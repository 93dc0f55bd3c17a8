-- Embeddings for dataset search (engine/embeddings.py), when pgvector is available and
-- this user may create it; without it, search is full-text + trigram and this table
-- does not exist. Run at every start (store/migrate.py), so a pgvector installed after
-- the first start turns embeddings on at the next one.
-- No ANN index: the column has no fixed dimension (any embedding model), and a search
-- scans one dataset's rows.
CREATE EXTENSION IF NOT EXISTS vector;
CREATE TABLE IF NOT EXISTS record_embeddings (
    record_id  text COLLATE "C" PRIMARY KEY REFERENCES records (id) ON DELETE CASCADE,
    account_id text COLLATE "C" NOT NULL,
    dataset_id text COLLATE "C" NOT NULL,
    model      text NOT NULL,
    text_md5   text NOT NULL,
    embedding  vector NOT NULL
);
CREATE INDEX IF NOT EXISTS record_embeddings_dataset ON record_embeddings (dataset_id, model);
