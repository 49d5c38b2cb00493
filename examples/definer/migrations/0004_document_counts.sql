-- Documents per org, as the caller's org sees them. SECURITY DEFINER (it runs as docs_owner) and
-- no WHERE clause: it relies on the policies, which apply to its owner because documents forces
-- row-level security. search_path is pinned so nothing the caller puts earlier on the path (a
-- temp table, say) can stand in for public.documents.
CREATE FUNCTION public.document_counts()
    RETURNS TABLE (org_id bigint, documents bigint)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = public, pg_temp
AS $$
    SELECT d.org_id, count(*)::bigint
    FROM public.documents AS d
    GROUP BY d.org_id
    ORDER BY d.org_id
$$;

-- PostgreSQL grants EXECUTE on a new function to PUBLIC: only the runtime's group gets it.
REVOKE EXECUTE ON FUNCTION public.document_counts() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.document_counts() TO docs_rw;
