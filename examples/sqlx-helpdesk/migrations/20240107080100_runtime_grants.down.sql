REVOKE ALL ON public.ticket_comments, public.tickets FROM helpdesk_app;
REVOKE USAGE ON SCHEMA public FROM helpdesk_app;
