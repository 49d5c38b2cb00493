-- Row-level security, enabled and FORCED on every table with a tenant_id (so the owner is
-- filtered too). The context is the GUC app.tenant_id read with current_setting(name, true):
-- NULL before it was ever set on a connection, '' after a transaction-local setting ended.
-- nullif(.., '') turns both into NULL, so no context selects nothing and rejects every write
-- (instead of raising 22P02 on ''::uuid). WITH CHECK repeats USING so a row can be neither
-- inserted for nor moved to another tenant.
ALTER TABLE public.projects ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.projects FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON public.projects TO saas_app
    USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);

ALTER TABLE public.tasks ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.tasks FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON public.tasks TO saas_app
    USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);

-- On the partitioned parent: its policies govern every row read or written through it. The
-- partitions are reachable only through the parent (the runtime holds nothing on them).
ALTER TABLE public.events ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.events FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON public.events TO saas_app
    USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);

ALTER TABLE public.failed_jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.failed_jobs FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON public.failed_jobs TO saas_app
    USING (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);
