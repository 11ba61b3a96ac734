//! The identity store: organizations, workspaces, principals, roles and
//! keys.
//!
//! The gateway reads it only through [`Store`], on key-cache misses. SQLite
//! is the embedded default: one file, created and migrated on first start.

pub mod limits;
pub mod sqlite;

use async_trait::async_trait;
use uuid::Uuid;

use crate::credential::{KeyHash, KeyKind};
use crate::identity::RetentionTier;

pub use limits::{
    RateOverrideRecord, StoredLimits, UsageCounter, UsageLimitRecord, UsageRecord, WorkspaceUsage,
};
pub use sqlite::SqliteStore;

/// A store failure. The gateway answers 503 for any of them: it never
/// treats a failed lookup as a missing or valid key.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("SQLite error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the store task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("corrupt record in {table}: {detail}")]
    Corrupt { table: &'static str, detail: String },
    #[error("cannot open the store at {path}: {detail}")]
    Open { path: String, detail: String },
    #[error("{0}")]
    Invalid(String),
}

/// An API key row, without its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    pub id: Uuid,
    pub kind: KeyKind,
    pub organization_id: Uuid,
    pub user_id: Option<Uuid>,
    pub service_account_id: Option<Uuid>,
    /// A legacy key's workspace, or a restriction of another key to one.
    pub workspace_id: Option<Uuid>,
    pub display_prefix: String,
    pub description: String,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub disabled: bool,
    pub last_used_at: Option<i64>,
}

/// What a plan includes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub id: String,
    pub name: String,
    /// `None`: no maximum.
    pub max_workspaces: Option<u32>,
    /// Custom workspace roles. Without it, every workspace member is Admin.
    pub rbac: bool,
    /// The Organization User role. Without it, every member is an
    /// Organization Admin.
    pub organization_user_role: bool,
    pub resource_tags: bool,
}

/// A role with its permissions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleRecord {
    pub id: String,
    pub name: String,
    pub permissions: Vec<String>,
}

/// A workspace as the authorizer needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceRecord {
    pub id: Uuid,
    pub retention: RetentionTier,
}

/// A workspace role held by a principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub workspace_id: Uuid,
    pub role: RoleRecord,
}

/// Everything about a key's owner that decides what the key may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrincipalRecord {
    pub plan: Plan,
    /// All workspaces of the key's organization.
    pub workspaces: Vec<WorkspaceRecord>,
    /// The owner's organization role; `None` if it is not a member.
    pub organization_role: Option<RoleRecord>,
    pub memberships: Vec<Membership>,
}

/// The store as the gateway's request path uses it.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Looks a key up by hash, with what its owner may do.
    async fn resolve_key(
        &self,
        hash: KeyHash,
    ) -> Result<Option<(KeyRecord, PrincipalRecord)>, StoreError>;

    /// Records when keys were last used: `(key id, Unix seconds)`.
    async fn record_key_use(&self, uses: Vec<(Uuid, i64)>) -> Result<(), StoreError>;

    /// Checks that the store responds to a query.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Reads every workspace's usage limits and rate-limit overrides.
    async fn load_limits(&self) -> Result<StoredLimits, StoreError> {
        Err(StoreError::Invalid(
            "this store does not keep limits".into(),
        ))
    }

    /// Reads all usage counters of `month` (`YYYY-MM`).
    async fn load_usage(&self, _month: String) -> Result<Vec<UsageRecord>, StoreError> {
        Err(StoreError::Invalid("this store does not keep usage".into()))
    }

    /// Adds each record's value to its usage counter, in one transaction.
    async fn add_usage(&self, _deltas: Vec<UsageRecord>) -> Result<(), StoreError> {
        Err(StoreError::Invalid("this store does not keep usage".into()))
    }
}

/// Returns the file path of an `sqlite://` URL: `sqlite://rel/path` is
/// relative to the working directory, `sqlite:///abs/path` absolute.
pub fn sqlite_path(url: &str) -> Option<&str> {
    let path = url.strip_prefix("sqlite://")?;
    (!path.is_empty()).then_some(path)
}

/// Current Unix time in seconds.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
