-- Row-level security, enabled and FORCED on every tenant table, each policy binding
-- app.workspace to that table's own tenant column. The slugs are text, so no cast: with no
-- context the setting reads NULL or '' and matches no slug (a slug is never empty).
ALTER TABLE public.contacts ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.contacts FORCE ROW LEVEL SECURITY;
CREATE POLICY workspace_isolation ON public.contacts TO crm_app
    USING (workspace = current_setting('app.workspace', true))
    WITH CHECK (workspace = current_setting('app.workspace', true));

ALTER TABLE public.deals ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.deals FORCE ROW LEVEL SECURITY;
CREATE POLICY workspace_isolation ON public.deals TO crm_app
    USING (owner_workspace = current_setting('app.workspace', true))
    WITH CHECK (owner_workspace = current_setting('app.workspace', true));

-- Notes are append-only for the runtime: a policy per command it holds (SELECT, INSERT), none
-- for UPDATE or DELETE.
ALTER TABLE public.notes ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.notes FORCE ROW LEVEL SECURITY;
CREATE POLICY workspace_read ON public.notes FOR SELECT TO crm_app
    USING (workspace = current_setting('app.workspace', true));
CREATE POLICY workspace_append ON public.notes FOR INSERT TO crm_app
    WITH CHECK (workspace = current_setting('app.workspace', true));
