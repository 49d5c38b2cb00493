-- A notes service whose application calls functions (RPC style, as PostgREST exposes them)
-- rather than writing SQL: every function takes a tenant or a row id.
CREATE TABLE public.workspaces (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL
);

CREATE TABLE public.notes (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    workspace_id uuid NOT NULL REFERENCES public.workspaces (id),
    body text NOT NULL,
    archived boolean NOT NULL DEFAULT false
);

ALTER TABLE public.notes ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
CREATE POLICY workspace_notes ON public.notes
    USING (workspace_id = nullif(current_setting('app.workspace', true), '')::uuid)
    WITH CHECK (workspace_id = nullif(current_setting('app.workspace', true), '')::uuid);
GRANT SELECT, INSERT, UPDATE ON public.notes TO notes_app;
