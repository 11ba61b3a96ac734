//! The SQLite store.
//!
//! One connection behind a mutex, used from blocking tasks so that the
//! async runtime never waits on disk. WAL mode lets the CLI write while a
//! gateway reads the same file.

mod admin;
pub mod audit;
pub mod directory;
pub mod keys;
mod limits;
pub mod members;
pub mod roles;
pub mod tags;

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row};
use uuid::Uuid;

use super::{
    KeyRecord, Membership, Plan, PrincipalRecord, RoleRecord, Store, StoreError, StoredLimits,
    UsageRecord, WorkspaceRecord,
};
use crate::authz::{RoleScope, BUILTIN_ROLES};
use crate::credential::{KeyHash, KeyKind};
use crate::identity::RetentionTier;

pub use admin::{NewKey, Setup};
pub use audit::{Actor, DirectoryError, Page, PageRequest};

/// Migrations in order; the `schema_migrations` table records which ran.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("migrations/0001_access_model.sql")),
    (2, include_str!("migrations/0002_admin.sql")),
    (3, include_str!("migrations/0003_limits.sql")),
];

/// The SQLite-backed store. Cloning shares the connection.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Open {
                path: path.display().to_string(),
                detail: e.to_string(),
            })?;
        }
        let conn = Connection::open(path).map_err(|e| StoreError::Open {
            path: path.display().to_string(),
            detail: e.to_string(),
        })?;
        Self::from_connection(conn)
    }

    /// Opens the store an `sqlite://` URL names.
    pub fn open_url(url: &str) -> Result<Self, StoreError> {
        let path = super::sqlite_path(url)
            .ok_or_else(|| StoreError::Invalid(format!("unsupported store URL {url:?}")))?;
        Self::open(Path::new(path))
    }

    /// An in-memory store, for tests.
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::from_connection(Connection::open_in_memory()?)
    }

    fn from_connection(mut conn: Connection) -> Result<Self, StoreError> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // In-memory databases answer "memory" here; that is fine.
        let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        migrate(&mut conn)?;
        sync_builtin_roles(&mut conn)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves no partial write behind,
        // because every write runs in a transaction, so the poison flag
        // carries no information.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let this = self.clone();
        tokio::task::spawn_blocking(move || f(&mut this.lock())).await?
    }

    /// Looks a key up synchronously; the async [`Store`] method wraps this.
    pub fn resolve_key_blocking(
        conn: &Connection,
        hash: &KeyHash,
    ) -> Result<Option<(KeyRecord, PrincipalRecord)>, StoreError> {
        let key = conn
            .query_row(
                &format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = ?1"),
                params![&hash.0[..]],
                key_from_row,
            )
            .optional()?;
        let Some(key) = key.transpose()? else {
            return Ok(None);
        };
        let principal = load_principal(conn, &key)?;
        Ok(Some((key, principal)))
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn resolve_key(
        &self,
        hash: KeyHash,
    ) -> Result<Option<(KeyRecord, PrincipalRecord)>, StoreError> {
        self.blocking(move |conn| Self::resolve_key_blocking(conn, &hash))
            .await
    }

    async fn record_key_use(&self, uses: Vec<(Uuid, i64)>) -> Result<(), StoreError> {
        self.blocking(move |conn| {
            let tx = conn.transaction()?;
            {
                let mut stmt = tx.prepare_cached(
                    "UPDATE api_keys SET last_used_at = MAX(COALESCE(last_used_at, 0), ?2) WHERE id = ?1",
                )?;
                for (id, at) in uses {
                    stmt.execute(params![id.to_string(), at])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.blocking(|conn| {
            conn.query_row("SELECT 1", [], |_| Ok(()))?;
            Ok(())
        })
        .await
    }

    async fn load_limits(&self) -> Result<StoredLimits, StoreError> {
        self.blocking(|conn| limits::load_limits(conn)).await
    }

    async fn load_usage(&self, month: String) -> Result<Vec<UsageRecord>, StoreError> {
        self.blocking(move |conn| limits::load_usage(conn, &month))
            .await
    }

    async fn add_usage(&self, deltas: Vec<UsageRecord>) -> Result<(), StoreError> {
        self.blocking(move |conn| limits::add_usage(conn, &deltas))
            .await
    }
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version INTEGER PRIMARY KEY,
             applied_at INTEGER NOT NULL
         )",
    )?;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    // Every migration not yet recorded runs, not only those above the
    // highest recorded version, so that a migration numbered into a gap
    // (written on another branch) still runs on a database that already
    // has a later one. Migrations must therefore not depend on the order
    // of versions that land separately.
    let applied: Vec<i64> = tx
        .prepare("SELECT version FROM schema_migrations")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for (version, sql) in MIGRATIONS {
        if !applied.contains(version) {
            tx.execute_batch(sql)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
                params![version, super::unix_now()],
            )?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// Writes the built-in roles and their permissions, so that the database
/// always matches the permission sets this build ships.
fn sync_builtin_roles(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    for role in BUILTIN_ROLES {
        let scope = match role.scope {
            RoleScope::Organization => "organization",
            RoleScope::Workspace => "workspace",
        };
        tx.execute(
            "INSERT INTO roles (id, organization_id, name, display_name, scope, is_builtin, created_at)
             VALUES (?1, NULL, ?1, ?2, ?3, 1, ?4)
             ON CONFLICT (id) DO UPDATE SET display_name = excluded.display_name, scope = excluded.scope",
            params![role.id, role.display_name, scope, super::unix_now()],
        )?;
        tx.execute(
            "DELETE FROM role_permissions WHERE role_id = ?1",
            params![role.id],
        )?;
        let mut insert = tx
            .prepare_cached("INSERT INTO role_permissions (role_id, permission) VALUES (?1, ?2)")?;
        for permission in (role.permissions)() {
            insert.execute(params![role.id, permission])?;
        }
    }
    tx.commit()?;
    Ok(())
}

const KEY_COLUMNS: &str = "id, kind, organization_id, user_id, service_account_id, workspace_id, \
     display_prefix, description, created_at, expires_at, revoked_at, disabled, last_used_at";

fn key_from_row(row: &Row<'_>) -> rusqlite::Result<Result<KeyRecord, StoreError>> {
    let kind: String = row.get(1)?;
    let ids = (
        row.get::<_, String>(0)?,
        row.get::<_, String>(2)?,
        row.get::<_, Option<String>>(3)?,
        row.get::<_, Option<String>>(4)?,
        row.get::<_, Option<String>>(5)?,
    );
    let rest = (
        row.get::<_, String>(6)?,
        row.get::<_, String>(7)?,
        row.get::<_, i64>(8)?,
        row.get::<_, Option<i64>>(9)?,
        row.get::<_, Option<i64>>(10)?,
        row.get::<_, bool>(11)?,
        row.get::<_, Option<i64>>(12)?,
    );
    Ok((|| {
        let kind = KeyKind::from_name(&kind).ok_or_else(|| corrupt("api_keys", "kind", &kind))?;
        Ok(KeyRecord {
            id: parse_uuid("api_keys", &ids.0)?,
            kind,
            organization_id: parse_uuid("api_keys", &ids.1)?,
            user_id: ids
                .2
                .as_deref()
                .map(|s| parse_uuid("api_keys", s))
                .transpose()?,
            service_account_id: ids
                .3
                .as_deref()
                .map(|s| parse_uuid("api_keys", s))
                .transpose()?,
            workspace_id: ids
                .4
                .as_deref()
                .map(|s| parse_uuid("api_keys", s))
                .transpose()?,
            display_prefix: rest.0,
            description: rest.1,
            created_at: rest.2,
            expires_at: rest.3,
            revoked_at: rest.4,
            disabled: rest.5,
            last_used_at: rest.6,
        })
    })())
}

fn load_principal(conn: &Connection, key: &KeyRecord) -> Result<PrincipalRecord, StoreError> {
    let org = key.organization_id.to_string();
    let plan = conn.query_row(
        "SELECT p.id, p.name, p.max_workspaces, p.rbac, p.organization_user_role, p.resource_tags
         FROM organizations o JOIN plans p ON p.id = o.plan_id WHERE o.id = ?1",
        params![org],
        |r| {
            Ok(Plan {
                id: r.get(0)?,
                name: r.get(1)?,
                max_workspaces: r.get(2)?,
                rbac: r.get(3)?,
                organization_user_role: r.get(4)?,
                resource_tags: r.get(5)?,
            })
        },
    )?;

    let mut stmt = conn
        .prepare_cached("SELECT id, retention_tier FROM workspaces WHERE organization_id = ?1")?;
    let workspaces = stmt
        .query_map(params![org], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?
        .map(|row| {
            let (id, tier) = row?;
            Ok(WorkspaceRecord {
                id: parse_uuid("workspaces", &id)?,
                retention: RetentionTier::from_name(&tier)
                    .ok_or_else(|| corrupt("workspaces", "retention_tier", &tier))?,
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;

    let (org_role_id, memberships_sql, owner): (Option<String>, &str, Option<String>) =
        match (key.kind, key.user_id, key.service_account_id) {
            (KeyKind::Service, _, Some(account)) => (
                conn.query_row(
                    "SELECT role_id FROM service_accounts WHERE id = ?1 AND organization_id = ?2",
                    params![account.to_string(), org],
                    |r| r.get(0),
                )
                .optional()?,
                "SELECT m.workspace_id, m.role_id FROM service_account_workspaces m
                 JOIN workspaces w ON w.id = m.workspace_id
                 WHERE m.service_account_id = ?1 AND w.organization_id = ?2",
                Some(account.to_string()),
            ),
            (_, Some(user), _) => (
                conn.query_row(
                    "SELECT role_id FROM organization_members WHERE user_id = ?1 AND organization_id = ?2",
                    params![user.to_string(), org],
                    |r| r.get(0),
                )
                .optional()?,
                "SELECT m.workspace_id, m.role_id FROM workspace_members m
                 JOIN workspaces w ON w.id = m.workspace_id
                 WHERE m.user_id = ?1 AND w.organization_id = ?2",
                Some(user.to_string()),
            ),
            _ => (None, "", None),
        };

    let organization_role = org_role_id.map(|id| load_role(conn, &id)).transpose()?;
    let mut memberships = Vec::new();
    if let Some(owner) = owner {
        let mut stmt = conn.prepare_cached(memberships_sql)?;
        let rows = stmt
            .query_map(params![owner, org], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        for (workspace, role) in rows {
            memberships.push(Membership {
                workspace_id: parse_uuid("workspace_members", &workspace)?,
                role: load_role(conn, &role)?,
            });
        }
    }

    Ok(PrincipalRecord {
        plan,
        workspaces,
        organization_role,
        memberships,
    })
}

pub(crate) fn load_role(conn: &Connection, id: &str) -> Result<RoleRecord, StoreError> {
    let name: String =
        conn.query_row("SELECT name FROM roles WHERE id = ?1", params![id], |r| {
            r.get(0)
        })?;
    let mut stmt = conn.prepare_cached(
        "SELECT permission FROM role_permissions WHERE role_id = ?1 ORDER BY permission",
    )?;
    let permissions = stmt
        .query_map(params![id], |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(RoleRecord {
        id: id.to_string(),
        name,
        permissions,
    })
}

pub(crate) fn parse_uuid(table: &'static str, text: &str) -> Result<Uuid, StoreError> {
    Uuid::try_parse(text).map_err(|_| corrupt(table, "id", text))
}

fn corrupt(table: &'static str, column: &str, value: &str) -> StoreError {
    StoreError::Corrupt {
        table,
        detail: format!("invalid {column} {value:?}"),
    }
}
