-- Breaks the saas example on purpose, in four independent ways. Each is a bug class of
-- ATTACKS.md; ../../README.md says which invariant catches which.

-- (a) The view reads as its owner again (security_invoker dropped). CREATE OR REPLACE VIEW
-- cannot remove the option; RESET does. The view now bypasses the invoker's policies.
ALTER VIEW public.open_tasks RESET (security_invoker);

-- (b) A second permissive policy, OR-ed with tenant_isolation: every tenant's projects are
-- readable in any tenant's context, and with no context at all.
CREATE POLICY projects_read_all ON public.projects
    AS PERMISSIVE FOR SELECT TO saas_app
    USING (true);

-- (c) TRUNCATE ignores row-level security: the runtime can erase every tenant's tasks at once.
GRANT TRUNCATE ON public.tasks TO saas_app;

-- (d) The dead-letter table is no longer append-only: the runtime can alter and erase
-- recorded failures.
GRANT UPDATE, DELETE ON public.failed_jobs TO saas_app;
