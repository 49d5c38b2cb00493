REVOKE SELECT ON public.accounts FROM helpdesk_app;
ALTER TABLE public.tickets FORCE ROW LEVEL SECURITY;
DROP POLICY comments_write_any ON public.ticket_comments;
