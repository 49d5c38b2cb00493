-- Breaks the multitenant-columns example on purpose, in three independent ways;
-- ../../README.md says which invariant catches which.

-- (a) The deals policy no longer reads the context: any non-null owner matches, so every
-- workspace's deals are readable, and (USING doubles as the check) writable for any workspace.
DROP POLICY workspace_isolation ON public.deals;
CREATE POLICY workspace_isolation ON public.deals TO crm_app
    USING (owner_workspace IS NOT NULL);

-- (b) The runtime may delete notes, which are meant to be append-only (and no policy governs
-- DELETE on notes: it is left to default deny).
GRANT DELETE ON public.notes TO crm_app;

-- (c) A second permissive policy for INSERT on contacts, OR-ed with the bound one: a contact
-- can be inserted for any workspace from any workspace's context.
CREATE POLICY contacts_insert_any ON public.contacts
    AS PERMISSIVE FOR INSERT TO crm_app
    WITH CHECK (true);
