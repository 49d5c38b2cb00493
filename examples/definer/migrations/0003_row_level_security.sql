-- Row-level security, enabled and FORCED on both tenant tables. The policies are for PUBLIC
-- (no TO clause) on purpose: FORCE makes them apply to the owner docs_owner too, which is what
-- keeps the SECURITY DEFINER function of 0004 (it runs as docs_owner) inside the caller's org.
-- A policy TO docs_rw only would leave the owner with default deny (the function would return
-- nothing); without FORCE the owner would bypass the policies (it would return every org).
-- nullif(.., ''): an ended transaction-local setting reads '', which would not cast to bigint.
ALTER TABLE public.folders ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.folders FORCE ROW LEVEL SECURITY;
CREATE POLICY org_isolation ON public.folders
    USING (org_id = nullif(current_setting('app.org_id', true), '')::bigint)
    WITH CHECK (org_id = nullif(current_setting('app.org_id', true), '')::bigint);

ALTER TABLE public.documents ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.documents FORCE ROW LEVEL SECURITY;
CREATE POLICY org_isolation ON public.documents
    USING (org_id = nullif(current_setting('app.org_id', true), '')::bigint)
    WITH CHECK (org_id = nullif(current_setting('app.org_id', true), '')::bigint);
