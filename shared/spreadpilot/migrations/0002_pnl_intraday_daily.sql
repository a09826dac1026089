-- Mark-to-market snapshots (every 30 s while the market is open) and the daily
-- rollup (16:30 ET). Both are written idempotently: a retried job writes the
-- same key again and changes nothing (intraday) or converges (daily).
CREATE TABLE pnl_intraday (
    id               BIGSERIAL PRIMARY KEY,
    follower_id      TEXT NOT NULL,
    snapshot_time    TIMESTAMPTZ NOT NULL,
    trading_date     DATE NOT NULL,
    realized         NUMERIC(16, 4) NOT NULL,
    unrealized       NUMERIC(16, 4) NOT NULL,
    total            NUMERIC(16, 4) NOT NULL,
    position_count   INTEGER NOT NULL DEFAULT 0 CHECK (position_count >= 0),
    market_value     NUMERIC(16, 4) NOT NULL DEFAULT 0,
    commissions      NUMERIC(14, 4) NOT NULL DEFAULT 0,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT pnl_intraday_once UNIQUE (follower_id, snapshot_time)
);

CREATE INDEX pnl_intraday_follower_date ON pnl_intraday (follower_id, trading_date, snapshot_time);
CREATE INDEX pnl_intraday_date ON pnl_intraday (trading_date);

CREATE TABLE pnl_daily (
    follower_id     TEXT NOT NULL,
    trading_date    DATE NOT NULL,
    opening_pnl     NUMERIC(16, 4) NOT NULL DEFAULT 0,
    closing_pnl     NUMERIC(16, 4) NOT NULL DEFAULT 0,
    realized        NUMERIC(16, 4) NOT NULL DEFAULT 0,
    unrealized      NUMERIC(16, 4) NOT NULL DEFAULT 0,
    total           NUMERIC(16, 4) NOT NULL DEFAULT 0,
    trades          INTEGER NOT NULL DEFAULT 0 CHECK (trades >= 0),
    volume          NUMERIC(14, 4) NOT NULL DEFAULT 0 CHECK (volume >= 0),
    commissions     NUMERIC(14, 4) NOT NULL DEFAULT 0,
    max_drawdown    NUMERIC(16, 4) NOT NULL DEFAULT 0,
    max_profit      NUMERIC(16, 4) NOT NULL DEFAULT 0,
    finalized       BOOLEAN NOT NULL DEFAULT FALSE,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (follower_id, trading_date)
);

CREATE INDEX pnl_daily_date ON pnl_daily (trading_date);
