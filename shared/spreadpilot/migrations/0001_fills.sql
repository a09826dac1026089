-- Executions and commission reports from IB, one row per execId.
-- IB sends the execution and its commission report separately and in either
-- order, so a row may first exist with only the commission columns set (the
-- "execution" columns are then all NULL, enforced below) and is completed when
-- the other half arrives. Money is NUMERIC, never float.
CREATE TABLE fills (
    exec_id              TEXT PRIMARY KEY,
    follower_id          TEXT,
    account              TEXT,
    order_ref            TEXT,
    perm_id              BIGINT,
    order_id             BIGINT,
    con_id               BIGINT,
    symbol               TEXT,
    sec_type             TEXT,
    "right"              TEXT CHECK ("right" IN ('C', 'P')),
    strike               NUMERIC(12, 4),
    expiry               DATE,
    multiplier           INTEGER,
    side                 TEXT CHECK (side IN ('BOT', 'SLD')),
    qty                  NUMERIC(14, 4) CHECK (qty > 0),
    price                NUMERIC(14, 6),
    commission           NUMERIC(14, 6),
    commission_currency  TEXT,
    realized_pnl_ib      NUMERIC(16, 6),
    exec_time            TIMESTAMPTZ,
    trading_date         DATE,
    created_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT fills_execution_complete CHECK (
        (follower_id IS NULL AND account IS NULL AND symbol IS NULL AND sec_type IS NULL
         AND side IS NULL AND qty IS NULL AND price IS NULL AND exec_time IS NULL
         AND trading_date IS NULL)
        OR
        (follower_id IS NOT NULL AND account IS NOT NULL AND symbol IS NOT NULL
         AND sec_type IS NOT NULL AND side IS NOT NULL AND qty IS NOT NULL
         AND price IS NOT NULL AND exec_time IS NOT NULL AND trading_date IS NOT NULL)
    )
);

CREATE INDEX fills_follower_date ON fills (follower_id, trading_date, exec_time);
CREATE INDEX fills_order_ref ON fills (order_ref) WHERE order_ref IS NOT NULL;
CREATE INDEX fills_trading_date ON fills (trading_date);
