-- One row per generation request: who asked, which model answered, what it cost, how it ended.
CREATE TABLE usage_events (
    id              bigserial PRIMARY KEY,
    tenant_id       text             NOT NULL,
    request_id      text             NOT NULL,
    occurred_at     timestamptz      NOT NULL,
    model           text             NOT NULL,
    provider        text             NOT NULL,
    input_tokens    bigint           NOT NULL,
    output_tokens   bigint           NOT NULL,
    cost_usd        double precision NOT NULL,
    latency_ms      integer          NOT NULL,
    first_token_ms  integer,
    -- ok | interrupted (broke after the first token) | cancelled (the caller left) | error
    status          text             NOT NULL,
    error           text,
    -- Why earlier routes were abandoned before this one answered; NULL when the first route answered.
    fallback_reason text,
    cached          boolean          NOT NULL DEFAULT false
);

CREATE INDEX usage_events_tenant_time ON usage_events (tenant_id, occurred_at);
