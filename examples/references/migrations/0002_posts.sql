-- Every reference carries the community: a post's author and a comment's post are always rows
-- of the same community, whatever ids a member sends.
CREATE TABLE public.posts (
    id bigint GENERATED ALWAYS AS IDENTITY,
    community_id uuid NOT NULL,
    author_id uuid NOT NULL,
    title text NOT NULL,
    PRIMARY KEY (community_id, id),
    FOREIGN KEY (community_id, author_id) REFERENCES public.members (community_id, id)
);

CREATE TABLE public.comments (
    id bigint GENERATED ALWAYS AS IDENTITY,
    community_id uuid NOT NULL,
    post_id bigint NOT NULL,
    body text NOT NULL,
    PRIMARY KEY (community_id, id),
    CONSTRAINT comments_post FOREIGN KEY (community_id, post_id) REFERENCES public.posts (community_id, id)
);

-- Invitation codes are unique across the whole forum by design: each is a long random token,
-- so a colliding insert tells nobody anything (accepted in rlsgate.toml, with this reason).
CREATE TABLE public.invitations (
    code text PRIMARY KEY CHECK (length(code) >= 16),
    community_id uuid NOT NULL REFERENCES public.communities (id)
);
