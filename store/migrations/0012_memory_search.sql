-- Memory search (memory/search, bot/{id}/memory/search, contact/{id}/memory/search) on
-- the retrieval engine of records: a stored tsvector and trigrams, searchable at once.
ALTER TABLE memories ADD COLUMN search tsvector
    GENERATED ALWAYS AS (to_tsvector('english', left(text, 200000))) STORED;
CREATE INDEX memories_search ON memories USING gin (search);
CREATE INDEX memories_trgm ON memories USING gin (text gin_trgm_ops);
CREATE INDEX memories_bot ON memories (bot_id, id);
