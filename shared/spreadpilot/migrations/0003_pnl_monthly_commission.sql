-- Monthly rollup (00:10 ET on the 1st) and the commission statement per
-- follower and month. ``month`` is the first day of the month.
CREATE TABLE pnl_monthly (
    follower_id     TEXT NOT NULL,
    month           DATE NOT NULL CHECK (EXTRACT(DAY FROM month) = 1),
    total           NUMERIC(16, 4) NOT NULL DEFAULT 0,
    realized        NUMERIC(16, 4) NOT NULL DEFAULT 0,
    commissions     NUMERIC(14, 4) NOT NULL DEFAULT 0,
    trades          INTEGER NOT NULL DEFAULT 0 CHECK (trades >= 0),
    trading_days    INTEGER NOT NULL DEFAULT 0 CHECK (trading_days >= 0),
    best_day        NUMERIC(16, 4),
    worst_day       NUMERIC(16, 4),
    best_day_date   DATE,
    worst_day_date  DATE,
    winning_days    INTEGER NOT NULL DEFAULT 0 CHECK (winning_days >= 0),
    losing_days     INTEGER NOT NULL DEFAULT 0 CHECK (losing_days >= 0),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (follower_id, month)
);

-- ``pnl`` is in ``pnl_currency`` (USD from IB); ``commission_amount`` is in
-- ``currency``, which differs from pnl_currency only when ``fx_rate`` (units of
-- ``currency`` per unit of pnl_currency) was applied. Once a statement is sent
-- or paid its figures are frozen; paid/sent are set only by mark_* calls.
CREATE TABLE commission_monthly (
    follower_id        TEXT NOT NULL,
    month              DATE NOT NULL CHECK (EXTRACT(DAY FROM month) = 1),
    pnl                NUMERIC(16, 4) NOT NULL,
    pnl_currency       TEXT NOT NULL DEFAULT 'USD',
    commission_pct     NUMERIC(6, 3) NOT NULL CHECK (commission_pct >= 0 AND commission_pct <= 100),
    commission_amount  NUMERIC(16, 4) NOT NULL CHECK (commission_amount >= 0),
    currency           TEXT NOT NULL,
    fx_rate            NUMERIC(18, 8),
    iban               TEXT,
    email              TEXT,
    payable            BOOLEAN NOT NULL DEFAULT FALSE,
    paid               BOOLEAN NOT NULL DEFAULT FALSE,
    paid_at            TIMESTAMPTZ,
    sent               BOOLEAN NOT NULL DEFAULT FALSE,
    sent_at            TIMESTAMPTZ,
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (follower_id, month),
    CONSTRAINT commission_currency_labelled CHECK (currency = pnl_currency OR fx_rate IS NOT NULL)
);

CREATE INDEX commission_monthly_unsent ON commission_monthly (month) WHERE NOT sent;
