-- Row-level security, enabled and FORCED on both tenant tables. The context is the GUC
-- app.account_id read with current_setting(name, true); nullif(.., '') turns the '' an ended
-- transaction-local setting leaves into NULL, so no context selects nothing and rejects every
-- write instead of raising 22P02 on ''::uuid.
ALTER TABLE public.tickets ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.tickets FORCE ROW LEVEL SECURITY;
CREATE POLICY account_isolation ON public.tickets TO helpdesk_app
    USING (account_id = nullif(current_setting('app.account_id', true), '')::uuid)
    WITH CHECK (account_id = nullif(current_setting('app.account_id', true), '')::uuid);

-- Comments are append-only for the runtime: one policy per command it holds (SELECT, INSERT),
-- none for UPDATE or DELETE, so those would match no row even with a grant.
ALTER TABLE public.ticket_comments ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.ticket_comments FORCE ROW LEVEL SECURITY;
CREATE POLICY comments_read ON public.ticket_comments FOR SELECT TO helpdesk_app
    USING (account_id = nullif(current_setting('app.account_id', true), '')::uuid);
CREATE POLICY comments_write ON public.ticket_comments FOR INSERT TO helpdesk_app
    WITH CHECK (account_id = nullif(current_setting('app.account_id', true), '')::uuid);
