DROP POLICY comments_write ON public.ticket_comments;
DROP POLICY comments_read ON public.ticket_comments;
ALTER TABLE public.ticket_comments NO FORCE ROW LEVEL SECURITY;
ALTER TABLE public.ticket_comments DISABLE ROW LEVEL SECURITY;
DROP POLICY account_isolation ON public.tickets;
ALTER TABLE public.tickets NO FORCE ROW LEVEL SECURITY;
ALTER TABLE public.tickets DISABLE ROW LEVEL SECURITY;
