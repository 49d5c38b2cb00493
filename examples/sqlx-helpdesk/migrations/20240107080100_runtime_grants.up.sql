-- The runtime's complete privilege matrix, as rlsgate.toml declares it: DML on tickets,
-- SELECT and INSERT on comments (append-only). Nothing on accounts, no TRUNCATE, REFERENCES or
-- TRIGGER, nothing on the identity sequences.
GRANT USAGE ON SCHEMA public TO helpdesk_app;

GRANT SELECT, INSERT, UPDATE, DELETE ON public.tickets TO helpdesk_app;
GRANT SELECT, INSERT ON public.ticket_comments TO helpdesk_app;
