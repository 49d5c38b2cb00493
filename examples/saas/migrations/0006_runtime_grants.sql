-- The runtime's complete privilege matrix, as rlsgate.toml declares it: DML on the tenant
-- tables (the partitioned parent, not its partitions), SELECT on the view, SELECT and INSERT on
-- the dead-letter table. Nothing on tenants, no TRUNCATE, REFERENCES or TRIGGER, no GRANT
-- OPTION, no default privileges, no sequences (ids are uuid defaults).
GRANT USAGE ON SCHEMA public TO saas_app;

GRANT SELECT, INSERT, UPDATE, DELETE ON public.projects, public.tasks, public.events TO saas_app;
GRANT SELECT ON public.open_tasks TO saas_app;
GRANT SELECT, INSERT ON public.failed_jobs TO saas_app;
