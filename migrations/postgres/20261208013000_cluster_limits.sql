-- Limits every instance on the database shares. A share: what one holder (an instance)
-- leased of a pool's capacity (a run's concurrency, a provider's max_concurrency) and
-- what it last asked for, until its lease runs out on the database clock.
CREATE TABLE cluster_shares (
    pool       TEXT NOT NULL,
    holder     TEXT NOT NULL,
    units      BIGINT NOT NULL,
    wanted     BIGINT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (pool, holder)
);
CREATE INDEX cluster_shares_expiry ON cluster_shares (expires_at);

-- A rate budget (requests or tokens per minute) as a token bucket: its level in
-- thousandths of a unit (negative: reserved ahead of the refill) when last refilled.
CREATE TABLE cluster_budgets (
    pool        TEXT PRIMARY KEY,
    level_milli BIGINT NOT NULL,
    refilled_at TIMESTAMPTZ NOT NULL
);
