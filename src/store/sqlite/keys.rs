//! The key lifecycle through the admin API: creation, listing without
//! secrets, revocation, disabling, expiry, rotation with overlap, and
//! import by hash.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use uuid::Uuid;

use super::admin::get_key;
use super::audit::{record, snapshot, unique_on, Actor, Change, DirectoryError, Page, PageRequest};
use super::directory::{load_organization, load_workspace, record_update};
use super::members::load_member;
use super::{key_from_row, parse_uuid, NewKey, SqliteStore, KEY_COLUMNS};
use crate::credential::{KeyHash, KeyKind, SecretKey};
use crate::store::{unix_now, KeyRecord};

/// Longest accepted key description, in characters.
const MAX_DESCRIPTION_CHARS: usize = 512;

/// A key as the admin API shows it: never the secret or its hash.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Key {
    pub id: Uuid,
    /// `pat`, `service` or `legacy`.
    pub kind: String,
    /// The first characters of the key, such as `lsv2_pt_1a2b`.
    pub display_prefix: String,
    pub description: String,
    pub organization_id: Uuid,
    pub user_id: Option<Uuid>,
    pub service_account_id: Option<Uuid>,
    /// A legacy key's workspace, or the one workspace another key is
    /// restricted to.
    pub workspace_id: Option<Uuid>,
    /// Unix seconds.
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub disabled: bool,
    /// Unix seconds. The gateway notes a use at most once a minute and
    /// writes uses in batches every 30 seconds, so it can lag by about 90.
    pub last_used_at: Option<i64>,
    /// The key that replaced this one by rotation.
    pub replaced_by: Option<Uuid>,
    /// `active`, `disabled`, `expired` or `revoked`.
    pub state: String,
}

impl Key {
    fn new(record: KeyRecord, replaced_by: Option<Uuid>) -> Self {
        let state = if record.revoked_at.is_some() {
            "revoked"
        } else if record.disabled {
            "disabled"
        } else if record.expires_at.is_some_and(|at| at <= unix_now()) {
            "expired"
        } else {
            "active"
        };
        Self {
            id: record.id,
            kind: record.kind.as_str().to_string(),
            display_prefix: record.display_prefix,
            description: record.description,
            organization_id: record.organization_id,
            user_id: record.user_id,
            service_account_id: record.service_account_id,
            workspace_id: record.workspace_id,
            created_at: record.created_at,
            expires_at: record.expires_at,
            revoked_at: record.revoked_at,
            disabled: record.disabled,
            last_used_at: record.last_used_at,
            replaced_by,
            state: state.to_string(),
        }
    }
}

/// Which keys to list.
#[derive(Debug, Clone, Copy)]
pub enum KeyScope {
    /// A user's personal access tokens.
    Personal(Uuid),
    /// The service keys and legacy keys bound to a workspace.
    Service(Uuid),
}

/// A change to a key's state.
#[derive(Debug, Clone, Copy)]
pub enum KeyChange {
    Revoke,
    Disable,
    Enable,
    /// Unix seconds, or `None` for no expiry.
    Expire(Option<i64>),
}

/// A key known only by its hash, to import.
#[derive(Debug, Clone)]
pub struct ImportedKey {
    pub key: NewKey,
    pub hash: KeyHash,
    pub display_prefix: String,
}

impl SqliteStore {
    pub fn list_keys_in(
        &self,
        org: Uuid,
        scope: KeyScope,
        page: PageRequest,
    ) -> Result<Page<Key>, DirectoryError> {
        let conn = self.lock();
        let (filter, id) = match scope {
            KeyScope::Personal(user) => ("kind = 'pat' AND user_id = ?2", user),
            KeyScope::Service(ws) => ("kind IN ('service', 'legacy') AND workspace_id = ?2", ws),
        };
        let mut stmt = conn.prepare(&format!(
            "SELECT {KEY_COLUMNS}, replaced_by FROM api_keys
             WHERE organization_id = ?1 AND {filter}
             ORDER BY created_at DESC, id LIMIT ?3 OFFSET ?4"
        ))?;
        let rows = stmt
            .query_map(
                params![
                    org.to_string(),
                    id.to_string(),
                    page.fetch(),
                    page.sql_offset()
                ],
                |r| Ok((key_from_row(r)?, r.get::<_, Option<String>>(13)?)),
            )?
            .collect::<Result<Vec<_>, _>>()?;
        let keys = rows
            .into_iter()
            .map(|(record, replaced_by)| {
                let replaced_by = replaced_by
                    .as_deref()
                    .map(|s| parse_uuid("api_keys", s))
                    .transpose()?;
                Ok(Key::new(record?, replaced_by))
            })
            .collect::<Result<Vec<_>, DirectoryError>>()?;
        Ok(page.finish(keys))
    }

    /// Finds a key of `org` by id.
    pub fn key_in(&self, org: Uuid, id: Uuid) -> Result<Key, DirectoryError> {
        load_key(&self.lock(), org, id)
    }

    /// Creates a personal access token for `user`, a member of `org`.
    pub fn create_personal_token(
        &self,
        actor: &Actor,
        org: Uuid,
        user: Uuid,
        description: &str,
        expires_at: Option<i64>,
    ) -> Result<(Key, SecretKey), DirectoryError> {
        let new = NewKey {
            kind: KeyKind::Personal,
            organization_id: org,
            user_id: Some(user),
            service_account_id: None,
            workspace_id: None,
            description: description.to_string(),
            expires_at,
        };
        self.create_checked_key(actor, &new)
    }

    /// Creates a service key for `account`, restricted to workspace `ws`,
    /// where the account must hold a role.
    pub fn create_service_key(
        &self,
        actor: &Actor,
        org: Uuid,
        ws: Uuid,
        account: Uuid,
        description: &str,
        expires_at: Option<i64>,
    ) -> Result<(Key, SecretKey), DirectoryError> {
        let new = NewKey {
            kind: KeyKind::Service,
            organization_id: org,
            user_id: None,
            service_account_id: Some(account),
            workspace_id: Some(ws),
            description: description.to_string(),
            expires_at,
        };
        self.create_checked_key(actor, &new)
    }

    fn create_checked_key(
        &self,
        actor: &Actor,
        new: &NewKey,
    ) -> Result<(Key, SecretKey), DirectoryError> {
        check_key_fields(new)?;
        let secret = SecretKey::generate(new.kind);
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        check_owner(&tx, new)?;
        let key = insert_key_row(&tx, new, &secret.hash().0, &secret.display_prefix(), actor)?;
        record_created(&tx, actor, "key.create", &key)?;
        tx.commit()?;
        Ok((key, secret))
    }

    /// Stores a key made elsewhere by its SHA-256 hash, so that it keeps
    /// working without being reissued.
    pub fn import_key(&self, actor: &Actor, imported: &ImportedKey) -> Result<Key, DirectoryError> {
        check_key_fields(&imported.key)?;
        let prefix = &imported.display_prefix;
        let expected = match imported.key.kind {
            KeyKind::Legacy => crate::credential::LEGACY_PREFIX,
            KeyKind::Personal => crate::credential::PERSONAL_PREFIX,
            KeyKind::Service => crate::credential::SERVICE_PREFIX,
        };
        if !prefix.starts_with(expected) || prefix.chars().count() > 16 {
            return Err(DirectoryError::invalid(
                "display_prefix",
                format!("must start with {expected} and be at most 16 characters"),
            ));
        }
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        check_owner(&tx, &imported.key)?;
        let key = insert_key_row(&tx, &imported.key, &imported.hash.0, prefix, actor).map_err(
            |e| match e {
                DirectoryError::Conflict { .. } => {
                    DirectoryError::conflict("key_hash", "a key with this hash exists")
                }
                other => other,
            },
        )?;
        record_created(&tx, actor, "key.import", &key)?;
        tx.commit()?;
        Ok(key)
    }

    /// Revokes, disables, re-enables or sets the expiry of a key.
    pub fn change_key(
        &self,
        actor: &Actor,
        org: Uuid,
        id: Uuid,
        change: KeyChange,
    ) -> Result<Key, DirectoryError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let before = load_key(&tx, org, id)?;
        if before.revoked_at.is_some() && !matches!(change, KeyChange::Revoke) {
            return Err(DirectoryError::conflict(
                "key_id",
                "the key is revoked and cannot change",
            ));
        }
        let id_text = id.to_string();
        let action = match change {
            KeyChange::Revoke => {
                tx.execute(
                    "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?2) WHERE id = ?1",
                    params![id_text, unix_now()],
                )?;
                "key.revoke"
            }
            KeyChange::Disable | KeyChange::Enable => {
                let disabled = matches!(change, KeyChange::Disable);
                tx.execute(
                    "UPDATE api_keys SET disabled = ?2 WHERE id = ?1",
                    params![id_text, disabled],
                )?;
                if disabled {
                    "key.disable"
                } else {
                    "key.enable"
                }
            }
            KeyChange::Expire(at) => {
                if at.is_some_and(|at| at <= unix_now()) {
                    return Err(DirectoryError::invalid(
                        "expires_at",
                        "must be in the future",
                    ));
                }
                tx.execute(
                    "UPDATE api_keys SET expires_at = ?2 WHERE id = ?1",
                    params![id_text, at],
                )?;
                "key.set_expiry"
            }
        };
        let after = load_key(&tx, org, id)?;
        record_update(&tx, actor, org, action, "key", id, &before, &after)?;
        tx.commit()?;
        Ok(after)
    }

    /// Replaces a key with a new one of the same kind, owner and
    /// restriction. The old key keeps working for `grace_secs` more
    /// seconds (never longer than its own expiry), then expires.
    pub fn rotate_key(
        &self,
        actor: &Actor,
        org: Uuid,
        id: Uuid,
        grace_secs: i64,
    ) -> Result<(Key, SecretKey), DirectoryError> {
        if grace_secs < 0 {
            return Err(DirectoryError::invalid(
                "grace_period_secs",
                "must be zero or more",
            ));
        }
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let old = get_key(&tx, id)?
            .filter(|k| k.organization_id == org)
            .ok_or_else(|| DirectoryError::not_found("key", id))?;
        let before = load_key(&tx, org, id)?;
        if before.state != "active" {
            return Err(DirectoryError::conflict(
                "key_id",
                format!(
                    "only an active key can be rotated; this one is {}",
                    before.state
                ),
            ));
        }
        if before.replaced_by.is_some() {
            return Err(DirectoryError::conflict(
                "key_id",
                "the key has already been rotated",
            ));
        }
        if old.kind == KeyKind::Legacy {
            return Err(DirectoryError::invalid(
                "key_id",
                "legacy ls__ keys cannot be rotated; create a service key instead",
            ));
        }
        let new = NewKey {
            kind: old.kind,
            organization_id: org,
            user_id: old.user_id,
            service_account_id: old.service_account_id,
            workspace_id: old.workspace_id,
            description: old.description.clone(),
            expires_at: old.expires_at,
        };
        let secret = SecretKey::generate(new.kind);
        let key = insert_key_row(&tx, &new, &secret.hash().0, &secret.display_prefix(), actor)?;
        let grace_end = unix_now().saturating_add(grace_secs);
        tx.execute(
            "UPDATE api_keys SET replaced_by = ?2, expires_at = MIN(COALESCE(expires_at, ?3), ?3)
             WHERE id = ?1",
            params![id.to_string(), key.id.to_string(), grace_end],
        )?;
        let after = load_key(&tx, org, id)?;
        record_update(&tx, actor, org, "key.rotate", "key", id, &before, &after)?;
        record_created(&tx, actor, "key.create", &key)?;
        tx.commit()?;
        Ok((key, secret))
    }
}

fn check_key_fields(new: &NewKey) -> Result<(), DirectoryError> {
    if new.description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(DirectoryError::invalid(
            "description",
            format!("must be at most {MAX_DESCRIPTION_CHARS} characters"),
        ));
    }
    if new.expires_at.is_some_and(|at| at <= unix_now()) {
        return Err(DirectoryError::invalid(
            "expires_at",
            "must be in the future",
        ));
    }
    Ok(())
}

/// Checks that a key's owner and workspace exist in its organization.
fn check_owner(conn: &Connection, new: &NewKey) -> Result<(), DirectoryError> {
    let org = new.organization_id;
    load_organization(conn, org)?;
    if let Some(ws) = new.workspace_id {
        load_workspace(conn, org, ws).map_err(|_| {
            DirectoryError::invalid(
                "workspace_id",
                format!("no workspace {ws} in this organization"),
            )
        })?;
    }
    match new.kind {
        KeyKind::Personal => {
            let user = new
                .user_id
                .ok_or_else(|| DirectoryError::invalid("user_id", "is required"))?;
            load_member(conn, org, user).map_err(|_| {
                DirectoryError::invalid(
                    "user_id",
                    format!("user {user} is not a member of the organization"),
                )
            })?;
        }
        KeyKind::Service => {
            let account = new
                .service_account_id
                .ok_or_else(|| DirectoryError::invalid("service_account_id", "is required"))?;
            let holds_role: Option<bool> = conn
                .query_row(
                    "SELECT ?3 IS NULL OR EXISTS (SELECT 1 FROM service_account_workspaces
                                                  WHERE service_account_id = ?1 AND workspace_id = ?3)
                     FROM service_accounts WHERE id = ?1 AND organization_id = ?2",
                    params![account.to_string(), org.to_string(), new.workspace_id.map(|w| w.to_string())],
                    |r| r.get(0),
                )
                .optional()?;
            match holds_role {
                None => {
                    return Err(DirectoryError::invalid(
                        "service_account_id",
                        format!("no service account {account} in this organization"),
                    ))
                }
                Some(false) => {
                    return Err(DirectoryError::invalid(
                        "service_account_id",
                        "the service account holds no role in this workspace; assign one first",
                    ))
                }
                Some(true) => {}
            }
        }
        KeyKind::Legacy => {
            if new.workspace_id.is_none() {
                return Err(DirectoryError::invalid(
                    "workspace_id",
                    "a legacy key needs a workspace",
                ));
            }
        }
    }
    Ok(())
}

/// Inserts a key row; run inside the transaction of the change.
pub(crate) fn insert_key_row(
    conn: &Connection,
    new: &NewKey,
    hash: &[u8; 32],
    display_prefix: &str,
    actor: &Actor,
) -> Result<Key, DirectoryError> {
    let id = Uuid::new_v4();
    conn.execute(
        "INSERT INTO api_keys (id, kind, key_hash, display_prefix, description, organization_id,
                               user_id, service_account_id, workspace_id, created_by, created_at,
                               expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
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
            actor.as_str(),
            unix_now(),
            new.expires_at,
        ],
    )
    .map_err(unique_on("key_hash", "a key with this hash exists"))?;
    load_key(conn, new.organization_id, id)
}

fn record_created(
    conn: &Connection,
    actor: &Actor,
    action: &str,
    key: &Key,
) -> Result<(), DirectoryError> {
    record(
        conn,
        actor,
        Change {
            organization_id: Some(key.organization_id),
            action,
            target_type: "key",
            target_id: key.id.to_string(),
            before: None,
            after: snapshot(key),
        },
    )?;
    Ok(())
}

fn load_key(conn: &Connection, org: Uuid, id: Uuid) -> Result<Key, DirectoryError> {
    let record = get_key(conn, id)?
        .filter(|k| k.organization_id == org)
        .ok_or_else(|| DirectoryError::not_found("key", id))?;
    let replaced_by: Option<String> = conn
        .query_row(
            "SELECT replaced_by FROM api_keys WHERE id = ?1",
            params![id.to_string()],
            |r| r.get(0),
        )
        .optional()?
        .flatten();
    let replaced_by = replaced_by
        .as_deref()
        .map(|s| parse_uuid("api_keys", s))
        .transpose()?;
    Ok(Key::new(record, replaced_by))
}
