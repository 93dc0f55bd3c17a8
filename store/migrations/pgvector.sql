-- Record vectors for dataset search (engine/vectors.py), when pgvector is available
-- and this user may create it; without it, search is full-text + trigram and these
-- tables do not exist. Run at every start while record_vectors is missing
-- (store/migrate.py), so a pgvector installed after the first start turns embeddings
-- on at the next one.
CREATE EXTENSION IF NOT EXISTS vector;
-- the vectors an endpoint computed at search time, before records were embedded in
-- the background: they are made again, by the model configured now
DROP TABLE IF EXISTS record_embeddings;

-- One vector per record and embedding model. The column has no fixed dimension (any
-- model); each model gets its own HNSW index over `embedding::vector(n)`, partial on
-- its name, made when its first vectors are stored (engine/vectors.py).
CREATE TABLE IF NOT EXISTS record_vectors (
    record_id  text COLLATE "C" NOT NULL REFERENCES records (id) ON DELETE CASCADE,
    model      text NOT NULL,
    account_id text COLLATE "C" NOT NULL,
    dataset_id text COLLATE "C" NOT NULL,
    embedding  vector NOT NULL,
    PRIMARY KEY (record_id, model)
);
-- exact search of a small dataset (and what the HNSW scan cannot serve)
CREATE INDEX IF NOT EXISTS record_vectors_dataset ON record_vectors (dataset_id, model);

-- The models whose vectors are kept here: a model seen for the first time has every
-- record queued for it.
CREATE TABLE IF NOT EXISTS vector_models (
    model      text PRIMARY KEY,
    dimensions integer,
    created_at bigint NOT NULL
);

-- The records to embed: a queue of their own, filled by the triggers below whatever
-- writes a record (create, update, a file's sync, an import), drained by every process
-- that runs jobs. A claim is a lease (claimed_until, ms); a text changed while its
-- record is being embedded resets the claim, so the new text is embedded too.
CREATE TABLE IF NOT EXISTS record_vectors_due (
    record_id     text COLLATE "C" PRIMARY KEY REFERENCES records (id) ON DELETE CASCADE,
    claim         text,
    claimed_until bigint NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS record_vectors_due_claimable ON record_vectors_due (claimed_until, record_id);

CREATE OR REPLACE FUNCTION records_vectors_due_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO record_vectors_due (record_id) SELECT id FROM new_records
    ON CONFLICT (record_id) DO UPDATE SET claim = NULL, claimed_until = 0;
    RETURN NULL;
END $$;
CREATE OR REPLACE FUNCTION records_vectors_due_updated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO record_vectors_due (record_id) VALUES (NEW.id)
    ON CONFLICT (record_id) DO UPDATE SET claim = NULL, claimed_until = 0;
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS records_vectors_due_inserted ON records;
CREATE TRIGGER records_vectors_due_inserted AFTER INSERT ON records
    REFERENCING NEW TABLE AS new_records FOR EACH STATEMENT EXECUTE FUNCTION records_vectors_due_inserted();
DROP TRIGGER IF EXISTS records_vectors_due_updated ON records;
CREATE TRIGGER records_vectors_due_updated AFTER UPDATE OF text ON records
    FOR EACH ROW WHEN (OLD.text IS DISTINCT FROM NEW.text) EXECUTE FUNCTION records_vectors_due_updated();
