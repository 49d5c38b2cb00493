-- Breaks the definer example on purpose, in two independent ways; ../../README.md says which
-- invariant catches which.

-- (a) The owner no longer goes through the policies on documents. The runtime's own queries are
-- still filtered (it does not own the table), but public.document_counts() runs as the owner:
-- it now returns every org's counts to any caller.
ALTER TABLE public.documents NO FORCE ROW LEVEL SECURITY;

-- (b) Another SECURITY DEFINER function, without a pinned search_path: it resolves "folders"
-- on the caller's search_path, where an object the caller controls can stand in for the table.
-- Its EXECUTE is granted but not declared in rlsgate.toml.
CREATE FUNCTION public.folder_names()
    RETURNS TABLE (org_id bigint, name text)
    LANGUAGE sql STABLE SECURITY DEFINER
AS $$
    SELECT f.org_id, f.name::text FROM folders AS f ORDER BY f.org_id, f.name
$$;
REVOKE EXECUTE ON FUNCTION public.folder_names() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.folder_names() TO docs_rw;
