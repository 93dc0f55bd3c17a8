-- Every API process caches recently used tokens (actions/auth.py TokenCache). A
-- changed or deleted token or account is announced on channel botkit_auth, so
-- every process forgets it at once, whoever changed it (API, CLI, SQL). Row
-- triggers also fire for rows deleted by ON DELETE CASCADE.

CREATE FUNCTION botkit_notify_token() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('botkit_auth', 'token:' || OLD.id);
    RETURN NULL;
END $$;

CREATE FUNCTION botkit_notify_account() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('botkit_auth', 'account:' || OLD.id);
    RETURN NULL;
END $$;

CREATE TRIGGER tokens_changed AFTER UPDATE OR DELETE ON tokens
    FOR EACH ROW EXECUTE FUNCTION botkit_notify_token();
CREATE TRIGGER accounts_changed AFTER UPDATE OR DELETE ON accounts
    FOR EACH ROW EXECUTE FUNCTION botkit_notify_account();
