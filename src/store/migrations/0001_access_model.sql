-- The access model: organizations, workspaces, users, roles, service
-- accounts, API keys and the settings that hang off them. Ids are UUIDs in
-- text form except the built-in roles and plans, which have fixed names.
-- Times are Unix seconds (UTC).

CREATE TABLE plans (
    id                      TEXT PRIMARY KEY,
    name                    TEXT NOT NULL,
    -- NULL: no maximum.
    max_workspaces          INTEGER,
    rbac                    INTEGER NOT NULL,
    organization_user_role  INTEGER NOT NULL,
    resource_tags           INTEGER NOT NULL
);

INSERT INTO plans (id, name, max_workspaces, rbac, organization_user_role, resource_tags) VALUES
    ('developer',  'Developer',  1,    0, 0, 1),
    ('plus',       'Plus',       3,    0, 1, 1),
    ('enterprise', 'Enterprise', NULL, 1, 1, 1);

CREATE TABLE organizations (
    id           TEXT PRIMARY KEY,
    name         TEXT NOT NULL,
    is_personal  INTEGER NOT NULL DEFAULT 0,
    plan_id      TEXT NOT NULL REFERENCES plans (id),
    -- Lets workspace Admins invite users into the organization.
    workspace_admins_can_invite INTEGER NOT NULL DEFAULT 0,
    settings     TEXT NOT NULL DEFAULT '{}',
    created_at   INTEGER NOT NULL
);

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE COLLATE NOCASE,
    display_name  TEXT NOT NULL DEFAULT '',
    created_at    INTEGER NOT NULL
);

CREATE TABLE workspaces (
    id               TEXT PRIMARY KEY,
    organization_id  TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name             TEXT NOT NULL,
    retention_tier   TEXT NOT NULL DEFAULT 'base' CHECK (retention_tier IN ('base', 'extended')),
    created_at       INTEGER NOT NULL,
    UNIQUE (organization_id, name)
);

-- Built-in roles have organization_id NULL; custom roles belong to one
-- organization and are always workspace-scoped.
CREATE TABLE roles (
    id               TEXT PRIMARY KEY,
    organization_id  TEXT REFERENCES organizations (id) ON DELETE CASCADE,
    name             TEXT NOT NULL,
    display_name     TEXT NOT NULL,
    description      TEXT NOT NULL DEFAULT '',
    scope            TEXT NOT NULL CHECK (scope IN ('organization', 'workspace')),
    is_builtin       INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL
);
CREATE UNIQUE INDEX roles_name ON roles (COALESCE(organization_id, ''), name);

CREATE TABLE role_permissions (
    role_id     TEXT NOT NULL REFERENCES roles (id) ON DELETE CASCADE,
    permission  TEXT NOT NULL,
    PRIMARY KEY (role_id, permission)
);

CREATE TABLE organization_members (
    organization_id  TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id          TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role_id          TEXT NOT NULL REFERENCES roles (id),
    created_at       INTEGER NOT NULL,
    PRIMARY KEY (organization_id, user_id)
);
CREATE INDEX organization_members_user ON organization_members (user_id);

CREATE TABLE workspace_members (
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    user_id       TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role_id       TEXT NOT NULL REFERENCES roles (id),
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (workspace_id, user_id)
);
CREATE INDEX workspace_members_user ON workspace_members (user_id);

CREATE TABLE service_accounts (
    id               TEXT PRIMARY KEY,
    organization_id  TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name             TEXT NOT NULL,
    role_id          TEXT NOT NULL REFERENCES roles (id),
    created_at       INTEGER NOT NULL,
    UNIQUE (organization_id, name)
);

CREATE TABLE service_account_workspaces (
    service_account_id  TEXT NOT NULL REFERENCES service_accounts (id) ON DELETE CASCADE,
    workspace_id        TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    role_id             TEXT NOT NULL REFERENCES roles (id),
    PRIMARY KEY (service_account_id, workspace_id)
);

CREATE TABLE api_keys (
    id                  TEXT PRIMARY KEY,
    kind                TEXT NOT NULL CHECK (kind IN ('legacy', 'pat', 'service')),
    -- SHA-256 of the whole key; the key itself is never stored.
    key_hash            BLOB NOT NULL UNIQUE,
    display_prefix      TEXT NOT NULL,
    description         TEXT NOT NULL DEFAULT '',
    organization_id     TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id             TEXT REFERENCES users (id) ON DELETE SET NULL,
    service_account_id  TEXT REFERENCES service_accounts (id) ON DELETE SET NULL,
    -- Legacy keys: their workspace. Other keys: an optional restriction.
    workspace_id        TEXT REFERENCES workspaces (id) ON DELETE SET NULL,
    created_by          TEXT,
    created_at          INTEGER NOT NULL,
    expires_at          INTEGER,
    revoked_at          INTEGER,
    disabled            INTEGER NOT NULL DEFAULT 0,
    last_used_at        INTEGER,
    -- Rotation: the key that replaced this one.
    replaced_by         TEXT REFERENCES api_keys (id),
    CHECK ((kind = 'pat') = (user_id IS NOT NULL AND service_account_id IS NULL) OR kind <> 'pat'),
    CHECK (kind <> 'service' OR service_account_id IS NOT NULL),
    CHECK (kind <> 'legacy' OR workspace_id IS NOT NULL)
);
CREATE INDEX api_keys_user ON api_keys (user_id);
CREATE INDEX api_keys_service_account ON api_keys (service_account_id);
CREATE INDEX api_keys_workspace ON api_keys (workspace_id);

CREATE TABLE invitations (
    id                 TEXT PRIMARY KEY,
    organization_id    TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    email              TEXT NOT NULL COLLATE NOCASE,
    role_id            TEXT NOT NULL REFERENCES roles (id),
    workspace_id       TEXT REFERENCES workspaces (id) ON DELETE CASCADE,
    workspace_role_id  TEXT REFERENCES roles (id),
    invited_by         TEXT,
    created_at         INTEGER NOT NULL,
    accepted_at        INTEGER,
    revoked_at         INTEGER
);
CREATE INDEX invitations_org ON invitations (organization_id);

CREATE TABLE tag_keys (
    id            TEXT PRIMARY KEY,
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    key           TEXT NOT NULL,
    description   TEXT NOT NULL DEFAULT '',
    created_at    INTEGER NOT NULL,
    UNIQUE (workspace_id, key)
);

CREATE TABLE tag_values (
    id          TEXT PRIMARY KEY,
    tag_key_id  TEXT NOT NULL REFERENCES tag_keys (id) ON DELETE CASCADE,
    value       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    UNIQUE (tag_key_id, value)
);

CREATE TABLE taggings (
    id             TEXT PRIMARY KEY,
    tag_value_id   TEXT NOT NULL REFERENCES tag_values (id) ON DELETE CASCADE,
    resource_type  TEXT NOT NULL CHECK (resource_type IN
        ('project', 'dataset', 'annotation_queue', 'deployment', 'experiment', 'prompt')),
    resource_id    TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    UNIQUE (tag_value_id, resource_type, resource_id)
);
CREATE INDEX taggings_resource ON taggings (resource_type, resource_id);

-- Monthly limits per workspace; no row means no limit.
CREATE TABLE usage_limits (
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    limit_type    TEXT NOT NULL CHECK (limit_type IN ('all_traces', 'extended_traces')),
    value         INTEGER NOT NULL CHECK (value >= 0),
    PRIMARY KEY (workspace_id, limit_type)
);

-- Usage per workspace and calendar month (UTC), as 'YYYY-MM'.
CREATE TABLE usage_counters (
    workspace_id  TEXT NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    month         TEXT NOT NULL,
    counter       TEXT NOT NULL CHECK (counter IN ('all_traces', 'extended_traces')),
    value         INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (workspace_id, month, counter)
);

CREATE TABLE audit_log (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    organization_id  TEXT,
    actor            TEXT NOT NULL,
    action           TEXT NOT NULL,
    target_type      TEXT NOT NULL,
    target_id        TEXT NOT NULL,
    before_value     TEXT,
    after_value      TEXT,
    at               INTEGER NOT NULL
);
CREATE INDEX audit_log_org_at ON audit_log (organization_id, at);
CREATE INDEX audit_log_actor_at ON audit_log (actor, at);
