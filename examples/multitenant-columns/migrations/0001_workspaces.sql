-- Workspaces: where tenants live, keyed by a text slug (what the tenant columns hold and what
-- app.workspace is set to). No tenant column of its own; the runtime holds no privilege on it.
CREATE TABLE public.workspaces (
    slug text PRIMARY KEY CHECK (slug ~ '^[a-z0-9-]+$' AND char_length(slug) <= 63),
    display_name text NOT NULL CHECK (btrim(display_name) <> ''),
    created_at timestamptz NOT NULL DEFAULT now()
);
