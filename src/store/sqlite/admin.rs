//! Writes to the SQLite store: bootstrap, principals, memberships and the
//! key lifecycle. Each operation is one transaction.

use rusqlite::{params, Connection, OptionalExtension};
use uuid::Uuid;

use super::{key_from_row, parse_uuid, SqliteStore, KEY_COLUMNS};
use crate::authz::{self, ORGANIZATION_ADMIN, WORKSPACE_ADMIN};
use crate::credential::{KeyKind, SecretKey};
use crate::identity::RetentionTier;
use crate::store::{unix_now, KeyRecord, StoreError};

/// Tag keys every new workspace starts with.
pub const DEFAULT_TAG_KEYS: &[&str] = &["Application", "Environment"];

/// What [`SqliteStore::setup`] created.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Setup {
    pub organization_id: Uuid,
    pub workspace_id: Uuid,
    pub user_id: Uuid,
}

/// A key to create.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub kind: KeyKind,
    pub organization_id: Uuid,
    pub user_id: Option<Uuid>,
    pub service_account_id: Option<Uuid>,
    pub workspace_id: Option<Uuid>,
    pub description: String,
    /// Unix seconds.
    pub expires_at: Option<i64>,
}

impl SqliteStore {
    /// Returns true if no organization exists yet.
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        let count: i64 = self
            .lock()
            .query_row("SELECT COUNT(*) FROM organizations", [], |r| r.get(0))?;
        Ok(count == 0)
    }

    /// Creates a shared organization on `plan`, one workspace, and a user
    /// who is its Organization Admin, in one transaction.
    pub fn setup(
        &self,
        organization: &str,
        workspace: &str,
        email: &str,
        plan: &str,
    ) -> Result<Setup, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let org = insert_organization(&tx, organization, plan, false)?;
        let ws = insert_workspace(&tx, org, workspace)?;
        let user = insert_user(&tx, email)?;
        upsert_organization_member(&tx, org, user, ORGANIZATION_ADMIN)?;
        upsert_workspace_member(&tx, ws, user, WORKSPACE_ADMIN)?;
        tx.commit()?;
        Ok(Setup {
            organization_id: org,
            workspace_id: ws,
            user_id: user,
        })
    }

    pub fn create_organization(
        &self,
        name: &str,
        plan: &str,
        personal: bool,
    ) -> Result<Uuid, StoreError> {
        insert_organization(&self.lock(), name, plan, personal)
    }

    /// Creates a workspace with the default tag keys.
    pub fn create_workspace(&self, organization: Uuid, name: &str) -> Result<Uuid, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let id = insert_workspace(&tx, organization, name)?;
        tx.commit()?;
        Ok(id)
    }

    pub fn set_retention_tier(
        &self,
        workspace: Uuid,
        tier: RetentionTier,
    ) -> Result<(), StoreError> {
        self.lock().execute(
            "UPDATE workspaces SET retention_tier = ?2 WHERE id = ?1",
            params![workspace.to_string(), tier.as_str()],
        )?;
        Ok(())
    }

    pub fn create_user(&self, email: &str) -> Result<Uuid, StoreError> {
        insert_user(&self.lock(), email)
    }

    pub fn add_organization_member(
        &self,
        organization: Uuid,
        user: Uuid,
        role: &str,
    ) -> Result<(), StoreError> {
        upsert_organization_member(&self.lock(), organization, user, role)
    }

    pub fn add_workspace_member(
        &self,
        workspace: Uuid,
        user: Uuid,
        role: &str,
    ) -> Result<(), StoreError> {
        upsert_workspace_member(&self.lock(), workspace, user, role)
    }

    pub fn remove_workspace_member(&self, workspace: Uuid, user: Uuid) -> Result<bool, StoreError> {
        let n = self.lock().execute(
            "DELETE FROM workspace_members WHERE workspace_id = ?1 AND user_id = ?2",
            params![workspace.to_string(), user.to_string()],
        )?;
        Ok(n > 0)
    }

    /// Creates a service account with an organization role.
    pub fn create_service_account(
        &self,
        organization: Uuid,
        name: &str,
        role: &str,
    ) -> Result<Uuid, StoreError> {
        let id = Uuid::new_v4();
        self.lock().execute(
            "INSERT INTO service_accounts (id, organization_id, name, role_id, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                id.to_string(),
                organization.to_string(),
                name,
                role,
                unix_now()
            ],
        )?;
        Ok(id)
    }

    pub fn add_service_account_workspace(
        &self,
        account: Uuid,
        workspace: Uuid,
        role: &str,
    ) -> Result<(), StoreError> {
        self.lock().execute(
            "INSERT INTO service_account_workspaces (service_account_id, workspace_id, role_id)
             VALUES (?1, ?2, ?3)
             ON CONFLICT (service_account_id, workspace_id) DO UPDATE SET role_id = excluded.role_id",
            params![account.to_string(), workspace.to_string(), role],
        )?;
        Ok(())
    }

    /// Creates a custom workspace role. Every permission must be a
    /// workspace permission of the catalogue.
    pub fn create_custom_role(
        &self,
        organization: Uuid,
        name: &str,
        permissions: &[&str],
    ) -> Result<String, StoreError> {
        let allowed = authz::permissions::workspace_permissions();
        if let Some(bad) = permissions
            .iter()
            .find(|p| !allowed.iter().any(|a| a == *p))
        {
            return Err(StoreError::Invalid(format!(
                "unknown workspace permission {bad:?}"
            )));
        }
        let id = Uuid::new_v4().to_string();
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO roles (id, organization_id, name, display_name, scope, is_builtin, created_at)
             VALUES (?1, ?2, ?3, ?3, 'workspace', 0, ?4)",
            params![id, organization.to_string(), name, unix_now()],
        )?;
        for permission in permissions {
            tx.execute(
                "INSERT INTO role_permissions (role_id, permission) VALUES (?1, ?2)",
                params![id, permission],
            )?;
        }
        tx.commit()?;
        Ok(id)
    }

    /// Creates a key and returns its record and its secret, which is not
    /// stored and cannot be shown again.
    pub fn create_key(&self, new: &NewKey) -> Result<(KeyRecord, SecretKey), StoreError> {
        let secret = SecretKey::generate(new.kind);
        let record = self.insert_key(new, &secret.hash().0, &secret.display_prefix())?;
        Ok((record, secret))
    }

    /// Stores a key by its hash: for imports and for keys made elsewhere.
    pub fn insert_key(
        &self,
        new: &NewKey,
        hash: &[u8; 32],
        display_prefix: &str,
    ) -> Result<KeyRecord, StoreError> {
        match new.kind {
            KeyKind::Personal if new.user_id.is_none() => {
                return Err(StoreError::Invalid(
                    "a personal access token needs a user".into(),
                ))
            }
            KeyKind::Service if new.service_account_id.is_none() => {
                return Err(StoreError::Invalid(
                    "a service key needs a service account".into(),
                ))
            }
            KeyKind::Legacy if new.workspace_id.is_none() => {
                return Err(StoreError::Invalid("a legacy key needs a workspace".into()))
            }
            _ => {}
        }
        let id = Uuid::new_v4();
        let conn = self.lock();
        conn.execute(
            "INSERT INTO api_keys (id, kind, key_hash, display_prefix, description, organization_id,
                                   user_id, service_account_id, workspace_id, created_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                id.to_string(),
                new.kind.as_str(),
                &hash[..],
                display_prefix,
                new.description,
                new.organization_id.to_string(),
                new.user_id.map(|u| u.to_string()),
                new.service_account_id.map(|u| u.to_string()),
                new.workspace_id.map(|u| u.to_string()),
                unix_now(),
                new.expires_at,
            ],
        )?;
        get_key(&conn, id)?.ok_or_else(|| StoreError::Invalid("the new key vanished".into()))
    }

    /// Lists the keys of an organization, newest first.
    pub fn list_keys(&self, organization: Uuid) -> Result<Vec<KeyRecord>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE organization_id = ?1 ORDER BY created_at DESC, id"
        ))?;
        let rows = stmt
            .query_map(params![organization.to_string()], key_from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter().collect()
    }

    /// Finds a key by id.
    pub fn key(&self, id: Uuid) -> Result<Option<KeyRecord>, StoreError> {
        get_key(&self.lock(), id)
    }

    /// Revokes a key; returns false if there is no such key.
    pub fn revoke_key(&self, id: Uuid) -> Result<bool, StoreError> {
        let n = self.lock().execute(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1",
            params![id.to_string(), unix_now()],
        )?;
        Ok(n > 0)
    }

    /// Sets or clears a key's expiry (Unix seconds).
    pub fn set_key_expiry(&self, id: Uuid, expires_at: Option<i64>) -> Result<bool, StoreError> {
        let n = self.lock().execute(
            "UPDATE api_keys SET expires_at = ?2 WHERE id = ?1",
            params![id.to_string(), expires_at],
        )?;
        Ok(n > 0)
    }

    /// The only organization, if there is exactly one: a default for the
    /// CLI on single-organization stores.
    pub fn sole_organization(&self) -> Result<Option<Uuid>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare("SELECT id FROM organizations LIMIT 2")?;
        let ids = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        match ids.as_slice() {
            [only] => Ok(Some(parse_uuid("organizations", only)?)),
            _ => Ok(None),
        }
    }

    /// Finds a user's id by email.
    pub fn user_by_email(&self, email: &str) -> Result<Option<Uuid>, StoreError> {
        let id: Option<String> = self
            .lock()
            .query_row(
                "SELECT id FROM users WHERE email = ?1",
                params![email],
                |r| r.get(0),
            )
            .optional()?;
        id.map(|id| parse_uuid("users", &id)).transpose()
    }
}

pub(crate) fn get_key(conn: &Connection, id: Uuid) -> Result<Option<KeyRecord>, StoreError> {
    conn.query_row(
        &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?1"),
        params![id.to_string()],
        key_from_row,
    )
    .optional()?
    .transpose()
}

fn insert_organization(
    conn: &Connection,
    name: &str,
    plan: &str,
    personal: bool,
) -> Result<Uuid, StoreError> {
    let id = Uuid::new_v4();
    conn.execute(
        "INSERT INTO organizations (id, name, is_personal, plan_id, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![id.to_string(), name, personal, plan, unix_now()],
    )?;
    Ok(id)
}

/// Inserts a workspace and its default tag keys; run inside a transaction.
pub(crate) fn insert_workspace(
    conn: &Connection,
    organization: Uuid,
    name: &str,
) -> Result<Uuid, StoreError> {
    let id = Uuid::new_v4();
    let now = unix_now();
    conn.execute(
        "INSERT INTO workspaces (id, organization_id, name, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![id.to_string(), organization.to_string(), name, now],
    )?;
    for key in DEFAULT_TAG_KEYS {
        conn.execute(
            "INSERT INTO tag_keys (id, workspace_id, key, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![Uuid::new_v4().to_string(), id.to_string(), key, now],
        )?;
    }
    Ok(id)
}

pub(crate) fn insert_user(conn: &Connection, email: &str) -> Result<Uuid, StoreError> {
    let id = Uuid::new_v4();
    conn.execute(
        "INSERT INTO users (id, email, created_at) VALUES (?1, ?2, ?3)",
        params![id.to_string(), email, unix_now()],
    )?;
    Ok(id)
}

pub(crate) fn upsert_organization_member(
    conn: &Connection,
    organization: Uuid,
    user: Uuid,
    role: &str,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO organization_members (organization_id, user_id, role_id, created_at)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (organization_id, user_id) DO UPDATE SET role_id = excluded.role_id",
        params![organization.to_string(), user.to_string(), role, unix_now()],
    )?;
    Ok(())
}

pub(crate) fn upsert_workspace_member(
    conn: &Connection,
    workspace: Uuid,
    user: Uuid,
    role: &str,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO workspace_members (workspace_id, user_id, role_id, created_at)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (workspace_id, user_id) DO UPDATE SET role_id = excluded.role_id",
        params![workspace.to_string(), user.to_string(), role, unix_now()],
    )?;
    Ok(())
}
