-- The runtime's privileges, held through the group docs_rw (rlsgate creates the group and makes
-- docs_app a member before the migrations run; migrations never create roles). Nothing on
-- orgs, nothing on the identity sequences, no TRUNCATE, REFERENCES or TRIGGER.
GRANT USAGE ON SCHEMA public TO docs_rw;

GRANT SELECT, INSERT, UPDATE, DELETE ON public.folders, public.documents TO docs_rw;
