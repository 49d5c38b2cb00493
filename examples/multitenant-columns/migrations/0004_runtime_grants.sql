-- The runtime's complete privilege matrix, as rlsgate.toml declares it. Nothing on workspaces,
-- no UPDATE or DELETE on notes, no TRUNCATE, REFERENCES or TRIGGER; no sequences (uuid ids).
GRANT USAGE ON SCHEMA public TO crm_app;

GRANT SELECT, INSERT, UPDATE, DELETE ON public.contacts, public.deals TO crm_app;
GRANT SELECT, INSERT ON public.notes TO crm_app;
