-- The restrictive policy goes: the permissive USING (true) alone opens every tenant's comments.
DROP POLICY tenant_only ON public.comments;
