DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['members', 'posts', 'comments', 'invitations'] LOOP
        EXECUTE format('ALTER TABLE public.%I ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY community_rows ON public.%I
                 USING (community_id = nullif(current_setting(''forum.community'', true), '''')::uuid)
                 WITH CHECK (community_id = nullif(current_setting(''forum.community'', true), '''')::uuid)',
            t);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON public.%I TO forum_app', t);
    END LOOP;
END
$$;
