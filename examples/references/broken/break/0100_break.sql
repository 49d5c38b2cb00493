-- (a) A comment refers to its post by id alone: a member of one community can attach a comment
--     to another community's post (the foreign key is checked without row-level security).
ALTER TABLE public.posts ADD CONSTRAINT posts_id_key UNIQUE (id);
ALTER TABLE public.comments DROP CONSTRAINT comments_post;
ALTER TABLE public.comments ADD CONSTRAINT comments_post_id_fkey FOREIGN KEY (post_id) REFERENCES public.posts (id);
-- (b) E-mail addresses unique across the forum: signing up with an address tells a member
--     whether another community has it.
ALTER TABLE public.members ADD CONSTRAINT members_email_key UNIQUE (email);
