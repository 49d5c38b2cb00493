-- no-transaction
-- The first line is sqlx's marker (rlsgate honours it too): this file runs outside a
-- transaction, one statement at a time, because CREATE INDEX CONCURRENTLY refuses to run
-- inside one. CONCURRENTLY builds the indexes without blocking writes, as on a live database.
CREATE INDEX CONCURRENTLY tickets_account_status
    ON public.tickets (account_id, status, opened_at DESC);

CREATE INDEX CONCURRENTLY ticket_comments_ticket
    ON public.ticket_comments (account_id, ticket_id);
