//! What every admin write shares: who acts, why a change failed, list
//! paging, and the audit log that records each change in the same
//! transaction.

use rusqlite::{params, Connection, ErrorCode};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::SqliteStore;
use crate::identity::{Identity, Principal};
use crate::store::{unix_now, StoreError};

/// Default number of items per page.
pub const DEFAULT_PAGE_LIMIT: u32 = 50;
/// Largest number of items per page.
pub const MAX_PAGE_LIMIT: u32 = 200;

/// Who makes a change, as the audit log records it: `user:<id>`,
/// `service_account:<id>`, `key:<id>` for a legacy key with no owner, or
/// `cli` for the local command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor(String);

impl Actor {
    /// The local command line, which acts on the store without a key.
    pub fn cli() -> Self {
        Self("cli".to_string())
    }

    pub fn of(identity: &Identity) -> Self {
        Self(match identity.principal {
            Principal::User(id) => format!("user:{id}"),
            Principal::ServiceAccount(id) => format!("service_account:{id}"),
            Principal::Workspace => format!("key:{}", identity.key_id),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Failure of an admin read or write. A failed write changes nothing.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: String },
    #[error("{field}: {detail}")]
    Invalid { field: &'static str, detail: String },
    #[error("{field}: unknown permission {permission:?}")]
    UnknownPermission {
        field: &'static str,
        permission: String,
    },
    #[error("{field}: {detail}")]
    Conflict { field: &'static str, detail: String },
    /// The plan's maximum of something is reached.
    #[error("{0}")]
    PlanLimit(String),
    /// The plan does not include a feature.
    #[error("{0}")]
    PlanFeature(String),
    /// A rule of the access model forbids the change for any caller.
    #[error("{detail}")]
    Forbidden { code: &'static str, detail: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<rusqlite::Error> for DirectoryError {
    fn from(error: rusqlite::Error) -> Self {
        DirectoryError::Store(error.into())
    }
}

impl DirectoryError {
    pub(crate) fn not_found(what: &'static str, id: impl ToString) -> Self {
        DirectoryError::NotFound {
            what,
            id: id.to_string(),
        }
    }

    pub(crate) fn invalid(field: &'static str, detail: impl Into<String>) -> Self {
        DirectoryError::Invalid {
            field,
            detail: detail.into(),
        }
    }

    pub(crate) fn conflict(field: &'static str, detail: impl Into<String>) -> Self {
        DirectoryError::Conflict {
            field,
            detail: detail.into(),
        }
    }
}

/// Turns a uniqueness violation into a conflict on `field`, and any other
/// error into a store error.
pub(crate) fn unique_on(
    field: &'static str,
    detail: impl Into<String>,
) -> impl FnOnce(rusqlite::Error) -> DirectoryError {
    let detail = detail.into();
    move |error| match error.sqlite_error_code() {
        Some(ErrorCode::ConstraintViolation) => DirectoryError::conflict(field, detail),
        _ => error.into(),
    }
}

/// Page of a list to return: a size and a cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: u32,
    pub offset: u64,
}

impl Default for PageRequest {
    fn default() -> Self {
        Self {
            limit: DEFAULT_PAGE_LIMIT,
            offset: 0,
        }
    }
}

impl PageRequest {
    /// The SQL `LIMIT` that fetches one row more than the page, to tell
    /// whether another page follows.
    pub(crate) fn fetch(&self) -> i64 {
        i64::from(self.limit) + 1
    }

    pub(crate) fn sql_offset(&self) -> i64 {
        i64::try_from(self.offset).unwrap_or(i64::MAX)
    }

    /// Builds the page from rows fetched with [`PageRequest::fetch`].
    pub(crate) fn finish<T>(&self, mut rows: Vec<T>) -> Page<T> {
        let more = rows.len() > self.limit as usize;
        rows.truncate(self.limit as usize);
        let next = more.then(|| (self.offset + u64::from(self.limit)).to_string());
        Page { items: rows, next }
    }
}

/// One page of a list.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Cursor of the next page, to pass as `cursor`; `null` on the last
    /// page.
    pub next: Option<String>,
}

/// One recorded admin write.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditRecord {
    pub id: i64,
    pub organization_id: Option<Uuid>,
    pub actor: String,
    /// Such as `workspace.create` or `key.revoke`.
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    /// The target before the change; `null` for a creation.
    #[schema(value_type = Option<Object>)]
    pub before: Option<Value>,
    /// The target after the change; `null` for a deletion.
    #[schema(value_type = Option<Object>)]
    pub after: Option<Value>,
    /// Unix seconds.
    pub at: i64,
}

/// Filter on the audit records to return.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub organization_id: Option<Uuid>,
    pub actor: Option<String>,
    /// Unix seconds, inclusive.
    pub since: Option<i64>,
    /// Unix seconds, exclusive.
    pub until: Option<i64>,
}

/// One change to record. `before` and `after` must never hold a secret.
pub(crate) struct Change<'a> {
    pub organization_id: Option<Uuid>,
    pub action: &'a str,
    pub target_type: &'a str,
    pub target_id: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// Writes an audit record; run inside the transaction of the change.
pub(crate) fn record(
    conn: &Connection,
    actor: &Actor,
    change: Change<'_>,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO audit_log (organization_id, actor, action, target_type, target_id,
                                before_value, after_value, at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            change.organization_id.map(|id| id.to_string()),
            actor.as_str(),
            change.action,
            change.target_type,
            change.target_id,
            change.before.map(|v| v.to_string()),
            change.after.map(|v| v.to_string()),
            unix_now(),
        ],
    )?;
    Ok(())
}

/// Serializes a record for the audit log.
pub(crate) fn snapshot<T: Serialize>(value: &T) -> Option<Value> {
    serde_json::to_value(value).ok()
}

impl SqliteStore {
    /// Lists audit records, newest first.
    pub fn audit_log(
        &self,
        filter: &AuditFilter,
        page: PageRequest,
    ) -> Result<Page<AuditRecord>, DirectoryError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT id, organization_id, actor, action, target_type, target_id,
                    before_value, after_value, at
             FROM audit_log
             WHERE (?1 IS NULL OR organization_id = ?1)
               AND (?2 IS NULL OR actor = ?2)
               AND (?3 IS NULL OR at >= ?3)
               AND (?4 IS NULL OR at < ?4)
             ORDER BY id DESC LIMIT ?5 OFFSET ?6",
        )?;
        let rows = stmt
            .query_map(
                params![
                    filter.organization_id.map(|id| id.to_string()),
                    filter.actor,
                    filter.since,
                    filter.until,
                    page.fetch(),
                    page.sql_offset(),
                ],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, Option<String>>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, Option<String>>(6)?,
                        r.get::<_, Option<String>>(7)?,
                        r.get::<_, i64>(8)?,
                    ))
                },
            )?
            .collect::<Result<Vec<_>, _>>()?;
        let records = rows
            .into_iter()
            .map(
                |(id, org, actor, action, target_type, target_id, before, after, at)| {
                    Ok(AuditRecord {
                        id,
                        organization_id: org
                            .as_deref()
                            .map(|s| super::parse_uuid("audit_log", s))
                            .transpose()?,
                        actor,
                        action,
                        target_type,
                        target_id,
                        before: before.and_then(|s| serde_json::from_str(&s).ok()),
                        after: after.and_then(|s| serde_json::from_str(&s).ok()),
                        at,
                    })
                },
            )
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(page.finish(records))
    }
}
