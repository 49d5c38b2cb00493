-- The LLM audit tables: one row per call (the idempotency claim), monthly cost rollups, and the
-- job rows of the investigation and budget-optimization tasks.
CREATE TABLE llm_api_calls (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now(),
    endpoint text NOT NULL,
    model text NOT NULL,
    input_tokens integer NOT NULL DEFAULT 0 CHECK (input_tokens >= 0),
    output_tokens integer NOT NULL DEFAULT 0 CHECK (output_tokens >= 0),
    cost_cents integer NOT NULL DEFAULT 0 CHECK (cost_cents >= 0),
    latency_ms integer NOT NULL DEFAULT 0 CHECK (latency_ms >= 0),
    was_cached boolean NOT NULL DEFAULT false,
    request_metadata jsonb,
    request_id text NOT NULL,
    CONSTRAINT llm_api_calls_idempotency UNIQUE (tenant_id, request_id, endpoint)
);

CREATE TABLE llm_monthly_costs (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    month date NOT NULL CHECK (month = date_trunc('month', month)::date),
    total_cost_cents bigint NOT NULL DEFAULT 0 CHECK (total_cost_cents >= 0),
    total_calls bigint NOT NULL DEFAULT 0 CHECK (total_calls >= 0),
    model_breakdown jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT llm_monthly_costs_tenant_month UNIQUE (tenant_id, month)
);

CREATE TABLE investigations (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    query text NOT NULL,
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'running', 'completed', 'failed')),
    result jsonb,
    cost_cents integer NOT NULL DEFAULT 0 CHECK (cost_cents >= 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE budget_optimization_jobs (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    status text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'running', 'completed', 'failed')),
    recommendations jsonb,
    cost_cents integer NOT NULL DEFAULT 0 CHECK (cost_cents >= 0),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
