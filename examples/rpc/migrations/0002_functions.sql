-- get_note: SECURITY INVOKER, so the caller's policies filter what it reads.
CREATE FUNCTION public.get_note(note_id bigint) RETURNS SETOF public.notes
    LANGUAGE sql STABLE AS $$ SELECT * FROM public.notes WHERE id = note_id $$;

-- note_count: SECURITY DEFINER (its owner counts without the caller's grants), and it answers
-- only for the caller's own workspace: any other argument is refused.
CREATE FUNCTION public.note_count(ws uuid) RETURNS bigint
    LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, public AS $$
BEGIN
    IF ws IS DISTINCT FROM nullif(current_setting('app.workspace', true), '')::uuid THEN
        RAISE EXCEPTION 'not your workspace' USING ERRCODE = '42501';
    END IF;
    RETURN (SELECT count(*) FROM public.notes WHERE workspace_id = ws);
END
$$;

-- archive_note: a procedure, SECURITY INVOKER: its UPDATE sees only the caller's notes.
CREATE PROCEDURE public.archive_note(note_id bigint)
    LANGUAGE sql AS $$ UPDATE public.notes SET archived = true WHERE id = note_id $$;

REVOKE EXECUTE ON FUNCTION public.get_note(bigint), public.note_count(uuid) FROM PUBLIC;
REVOKE EXECUTE ON PROCEDURE public.archive_note(bigint) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION public.get_note(bigint), public.note_count(uuid) TO notes_app;
GRANT EXECUTE ON PROCEDURE public.archive_note(bigint) TO notes_app;
