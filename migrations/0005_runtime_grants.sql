-- The runtime's complete privilege matrix (SYSTEM.md section 4). Grants go to the privilege
-- containers app_rw / app_ro; the DLQ grant goes to app_user directly. Nothing else: no DELETE,
-- TRUNCATE, TRIGGER, REFERENCES, no GRANT OPTION, no default privileges, nothing on tenants.
GRANT USAGE ON SCHEMA public TO app_rw, app_ro;

GRANT SELECT, INSERT ON llm_api_calls TO app_rw;
GRANT SELECT, INSERT, UPDATE ON llm_monthly_costs TO app_rw;
GRANT SELECT, INSERT ON investigations TO app_rw;
GRANT SELECT, INSERT ON budget_optimization_jobs TO app_rw;

GRANT SELECT ON llm_api_calls, llm_monthly_costs, investigations, budget_optimization_jobs TO app_ro;

GRANT SELECT, INSERT ON worker_failed_jobs TO app_user;
