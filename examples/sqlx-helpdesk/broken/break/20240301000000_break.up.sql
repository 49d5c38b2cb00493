-- Breaks the help desk example on purpose, in three independent ways; ../../README.md says
-- which invariant catches which.

-- (a) A second INSERT policy, OR-ed with comments_write, that checks nothing: the runtime can
-- file a comment under another account in any account's context.
CREATE POLICY comments_write_any ON public.ticket_comments FOR INSERT TO helpdesk_app
    WITH CHECK (true);

-- (b) Tickets no longer force row-level security: their owner bypasses the policies.
ALTER TABLE public.tickets NO FORCE ROW LEVEL SECURITY;

-- (c) The runtime can read the accounts table, which rlsgate.toml does not declare.
GRANT SELECT ON public.accounts TO helpdesk_app;
