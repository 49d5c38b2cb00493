-- A forum of communities (the tenants), their members, posts and comments.
CREATE TABLE public.communities (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL
);

-- Handles are unique within a community, not across them: the key includes the tenant.
CREATE TABLE public.members (
    id uuid NOT NULL DEFAULT gen_random_uuid(),
    community_id uuid NOT NULL REFERENCES public.communities (id),
    handle text NOT NULL,
    email text,
    PRIMARY KEY (community_id, id),
    UNIQUE (community_id, handle)
);
