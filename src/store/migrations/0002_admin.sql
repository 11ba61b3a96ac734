-- Admin API support: at most one pending invitation per organization and
-- email, and indexes for the admin API's list queries.

CREATE UNIQUE INDEX invitations_pending ON invitations (organization_id, email)
    WHERE accepted_at IS NULL AND revoked_at IS NULL;

CREATE INDEX api_keys_org_created ON api_keys (organization_id, created_at);
CREATE INDEX service_account_workspaces_workspace ON service_account_workspaces (workspace_id);
CREATE INDEX taggings_value ON taggings (tag_value_id);
