-- Conversation compaction (resources/completion/, engine/compaction.py): every
-- completion in a conversation reads its last checkpoint first; this partial index
-- finds it in one step however long the conversation (messages_conversation then
-- serves the messages after what it covers).
CREATE INDEX messages_checkpoint ON messages (conversation_id, id) WHERE type = 'checkpoint';
