-- A help desk: tenants, their tickets and the comments on them. Keys come from uuid-ossp (an
-- extension: its functions are PUBLIC-executable and belong to the extension, not the app).
CREATE EXTENSION IF NOT EXISTS "uuid-ossp" WITH SCHEMA public;

CREATE TABLE public.tenants (
    id uuid PRIMARY KEY DEFAULT public.uuid_generate_v4(),
    name text NOT NULL
);
