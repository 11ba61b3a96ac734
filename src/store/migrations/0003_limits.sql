-- Rate limits per workspace that replace the configured defaults on routes
-- that keep them. NULL keeps the default; 0 means no limit.
CREATE TABLE workspace_rate_limits (
    workspace_id   TEXT PRIMARY KEY REFERENCES workspaces (id) ON DELETE CASCADE,
    per_key        INTEGER CHECK (per_key IS NULL OR per_key >= 0),
    per_workspace  INTEGER CHECK (per_workspace IS NULL OR per_workspace >= 0),
    period_secs    INTEGER NOT NULL CHECK (period_secs BETWEEN 1 AND 86400),
    updated_at     INTEGER NOT NULL
);
