-- (a) note_count trusts its argument: it switches the context to it and counts, so any caller
--     reads any workspace's count (and leaves the context switched for the rest of its
--     transaction). Nothing static shows it: RLS is forced, search_path pinned, the owner
--     does not bypass RLS.
CREATE OR REPLACE FUNCTION public.note_count(ws uuid) RETURNS bigint
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    PERFORM set_config('app.workspace', ws::text, true);
    RETURN (SELECT count(*) FROM public.notes);
END
$$;

-- (b) notes_by_workspace: SECURITY DEFINER, filters by its argument, owned by a role that
--     bypasses the policies of a table it owns without FORCE... here the owner is filtered,
--     so it too sets the context to its argument: every workspace's notes to any caller.
CREATE FUNCTION public.notes_by_workspace(ws uuid) RETURNS SETOF public.notes
    LANGUAGE plpgsql VOLATILE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    PERFORM set_config('app.workspace', ws::text, true);
    RETURN QUERY SELECT * FROM public.notes;
END
$$;
REVOKE EXECUTE ON FUNCTION public.notes_by_workspace(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.notes_by_workspace(uuid) TO notes_app;
