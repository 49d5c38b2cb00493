-- Row-level security, enabled and FORCED on every table with a tenant_id (so the owner is
-- filtered too). The tenant context is the GUC app.current_tenant_id read with
-- current_setting(name, true): NULL before it was ever set on a connection, '' after a
-- transaction-local setting ended. nullif(.., '') turns both into NULL, so an unset or ended
-- context selects nothing and rejects writes without raising 22P02.
ALTER TABLE llm_api_calls ENABLE ROW LEVEL SECURITY;
ALTER TABLE llm_api_calls FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON llm_api_calls
    USING (tenant_id = nullif(current_setting('app.current_tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('app.current_tenant_id', true), '')::uuid);

ALTER TABLE llm_monthly_costs ENABLE ROW LEVEL SECURITY;
ALTER TABLE llm_monthly_costs FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON llm_monthly_costs
    USING (tenant_id = nullif(current_setting('app.current_tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('app.current_tenant_id', true), '')::uuid);

ALTER TABLE investigations ENABLE ROW LEVEL SECURITY;
ALTER TABLE investigations FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON investigations
    USING (tenant_id = nullif(current_setting('app.current_tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('app.current_tenant_id', true), '')::uuid);

ALTER TABLE budget_optimization_jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE budget_optimization_jobs FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON budget_optimization_jobs
    USING (tenant_id = nullif(current_setting('app.current_tenant_id', true), '')::uuid)
    WITH CHECK (tenant_id = nullif(current_setting('app.current_tenant_id', true), '')::uuid);

-- The DLQ: a tenant's rows only in that tenant's context; NULL-tenant rows only with no tenant
-- context (the operator view), never inside any tenant's context.
ALTER TABLE worker_failed_jobs ENABLE ROW LEVEL SECURITY;
ALTER TABLE worker_failed_jobs FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON worker_failed_jobs
    USING (
        CASE WHEN tenant_id IS NULL
             THEN nullif(current_setting('app.current_tenant_id', true), '') IS NULL
             ELSE tenant_id = nullif(current_setting('app.current_tenant_id', true), '')::uuid
        END
    )
    WITH CHECK (
        CASE WHEN tenant_id IS NULL
             THEN nullif(current_setting('app.current_tenant_id', true), '') IS NULL
             ELSE tenant_id = nullif(current_setting('app.current_tenant_id', true), '')::uuid
        END
    );
