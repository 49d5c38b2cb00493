GRANT USAGE ON SCHEMA app TO desk_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.tickets, public.comments TO desk_app;
GRANT SELECT, INSERT ON public.failed_jobs TO desk_app;
