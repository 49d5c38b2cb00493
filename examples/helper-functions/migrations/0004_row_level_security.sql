-- Row-level security is enabled, not forced: the owner never logs in for the application (the
-- usual shape of projects whose migrations run as a privileged role).
ALTER TABLE public.tickets ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_tickets ON public.tickets
    USING (tenant_id = app.current_tenant())
    WITH CHECK (tenant_id = app.current_tenant());

-- Comments: a permissive policy opens every row, a restrictive one keeps them to the tenant.
ALTER TABLE public.comments ENABLE ROW LEVEL SECURITY;
CREATE POLICY anyone ON public.comments USING (true) WITH CHECK (true);
CREATE POLICY tenant_only ON public.comments AS RESTRICTIVE
    USING (tenant_id = app.current_tenant())
    WITH CHECK (tenant_id = app.current_tenant());

ALTER TABLE public.billing_events ENABLE ROW LEVEL SECURITY;

-- The DLQ reads the setting without missing_ok: with no context it raises (closed).
ALTER TABLE public.failed_jobs ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_failures ON public.failed_jobs
    USING (tenant_id = current_setting('app.tenant')::uuid)
    WITH CHECK (tenant_id = current_setting('app.tenant')::uuid);
