//! Key endpoints: personal access tokens, service keys, and the lifecycle
//! of any key (revoke, disable, enable, expiry, rotation, import).
//!
//! Who may change a key depends on the key: a user manages their own
//! personal access tokens with `organization:pats:create`, and other
//! users' tokens with `organization:manage-members`. Service and legacy
//! keys bound to a workspace need `workspaces:manage-service-keys` there;
//! others need `organization:manage-members`.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::organization::PageParams;
use super::request::{Call, Reply};
use super::{AdminState, ApiError};
use crate::credential::{KeyHash, KeyKind, SecretKey};
use crate::identity::{Identity, Principal};
use crate::store::sqlite::keys::{ImportedKey, Key, KeyChange, KeyScope};
use crate::store::sqlite::{Actor, NewKey, Page};

/// Overlap of a rotated key with its replacement when the request names
/// none.
const DEFAULT_ROTATION_GRACE_SECS: i64 = 24 * 60 * 60;
/// Longest accepted overlap of a rotated key with its replacement.
const MAX_ROTATION_GRACE_SECS: i64 = 30 * 24 * 60 * 60;

/// A key to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    #[serde(default)]
    pub description: String,
    /// Unix seconds; `null` or absent for no expiry.
    pub expires_at: Option<i64>,
}

/// A service key to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateServiceKey {
    /// The account the key acts for; it must hold a role in the workspace.
    pub service_account_id: Uuid,
    #[serde(default)]
    pub description: String,
    /// Unix seconds; `null` or absent for no expiry.
    pub expires_at: Option<i64>,
}

/// A new key with its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKey {
    pub key: Key,
    /// The key's secret. It is shown only in this reply.
    pub api_key: String,
}

/// A new expiry.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetExpiry {
    /// Unix seconds in the future, or `null` for no expiry.
    pub expires_at: Option<i64>,
}

/// How long the old key keeps working after a rotation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rotate {
    /// Seconds, from 0 to 2592000 (30 days); 86400 (one day) by default.
    pub grace_period_secs: Option<i64>,
}

/// A key made elsewhere, known by its hash.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportKey {
    /// `pat`, `service` or `legacy`.
    pub kind: String,
    /// SHA-256 of the whole key, in 64 hex digits.
    pub key_hash: String,
    /// The key's first characters, such as `lsv2_sk_1a2b`, for display.
    pub display_prefix: String,
    #[serde(default)]
    pub description: String,
    /// The owner of a personal access token.
    pub user_id: Option<Uuid>,
    /// The owner of a service key.
    pub service_account_id: Option<Uuid>,
    /// A legacy key's workspace, or a restriction of another key.
    pub workspace_id: Option<Uuid>,
    pub expires_at: Option<i64>,
}

/// Lists the caller's personal access tokens, without secrets. Permission:
/// `organization:pats:create`.
#[utoipa::path(get, path = "/v1/keys/pats", tag = "keys", params(PageParams),
    responses((status = 200, body = Page<Key>), (status = "4XX", body = super::error::ErrorBody)))]
pub(super) async fn list_pats(state: &AdminState, call: &Call) -> Result<Reply, ApiError> {
    let caller = state.organization(call, "organization:pats:create").await?;
    let user = caller_user(&caller)?;
    let (org, page) = (caller.org_id, call.page()?);
    Reply::ok(
        &state
            .read(move |s| s.list_keys_in(org, KeyScope::Personal(user), page))
            .await?,
    )
}

/// Creates a personal access token for the caller and returns its secret
/// once. Permission: `organization:pats:create`.
#[utoipa::path(post, path = "/v1/keys/pats", tag = "keys", request_body = CreateKey,
    responses((status = 201, body = CreatedKey), (status = "4XX", body = super::error::ErrorBody)))]
pub(super) async fn create_pat(state: &AdminState, call: &Call) -> Result<Reply, ApiError> {
    let caller = state.organization(call, "organization:pats:create").await?;
    let user = caller_user(&caller)?;
    let body: CreateKey = call.json()?;
    let org = caller.org_id;
    let (key, secret) = state
        .write(Actor::of(&caller), move |s, actor| {
            s.create_personal_token(actor, org, user, &body.description, body.expires_at)
        })
        .await?;
    created(key, &secret)
}

/// Lists the service keys and legacy keys of a workspace, without secrets.
/// Permission: `workspaces:read` in it.
#[utoipa::path(get, path = "/v1/workspaces/{workspace_id}/service-keys", tag = "keys",
    params(("workspace_id" = Uuid, Path, description = "The workspace id"), PageParams),
    responses((status = 200, body = Page<Key>), (status = "4XX", body = super::error::ErrorBody)))]
pub(super) async fn list_service_keys(
    state: &AdminState,
    call: &Call,
    ws: Uuid,
) -> Result<Reply, ApiError> {
    let access = state.workspace(call, ws, "workspaces:read").await?;
    let (org, page) = (access.identity.org_id, call.page()?);
    Reply::ok(
        &state
            .read(move |s| s.list_keys_in(org, KeyScope::Service(ws), page))
            .await?,
    )
}

/// Creates a service key, restricted to the workspace, and returns its
/// secret once. Permission: `workspaces:manage-service-keys` in it.
#[utoipa::path(post, path = "/v1/workspaces/{workspace_id}/service-keys", tag = "keys",
    request_body = CreateServiceKey,
    params(("workspace_id" = Uuid, Path, description = "The workspace id")),
    responses((status = 201, body = CreatedKey), (status = "4XX", body = super::error::ErrorBody)))]
pub(super) async fn create_service_key(
    state: &AdminState,
    call: &Call,
    ws: Uuid,
) -> Result<Reply, ApiError> {
    let access = state
        .workspace(call, ws, "workspaces:manage-service-keys")
        .await?;
    let body: CreateServiceKey = call.json()?;
    let org = access.identity.org_id;
    let (key, secret) = state
        .write(Actor::of(&access.identity), move |s, actor| {
            s.create_service_key(
                actor,
                org,
                ws,
                body.service_account_id,
                &body.description,
                body.expires_at,
            )
        })
        .await?;
    created(key, &secret)
}

/// Imports a key by its SHA-256 hash, so that it keeps working without
/// being reissued. Permission: `organization:manage`.
#[utoipa::path(post, path = "/v1/keys/import", tag = "keys", request_body = ImportKey,
    responses((status = 201, body = Key), (status = "4XX", body = super::error::ErrorBody)))]
pub(super) async fn import(state: &AdminState, call: &Call) -> Result<Reply, ApiError> {
    let caller = state.organization(call, "organization:manage").await?;
    let body: ImportKey = call.json()?;
    let kind = KeyKind::from_name(&body.kind).ok_or_else(|| {
        ApiError::bad_request(
            "kind",
            format!(
                "unknown key kind {:?}: expected pat, service or legacy",
                body.kind
            ),
        )
    })?;
    let hash = KeyHash::from_hex(&body.key_hash.to_ascii_lowercase()).ok_or_else(|| {
        ApiError::bad_request(
            "key_hash",
            "must be 64 hex digits (SHA-256 of the whole key)",
        )
    })?;
    let imported = ImportedKey {
        key: NewKey {
            kind,
            organization_id: caller.org_id,
            user_id: body.user_id,
            service_account_id: body.service_account_id,
            workspace_id: body.workspace_id,
            description: body.description,
            expires_at: body.expires_at,
        },
        hash,
        display_prefix: body.display_prefix,
    };
    let key = state
        .write(Actor::of(&caller), move |s, actor| {
            s.import_key(actor, &imported)
        })
        .await?;
    Reply::created(&key)
}

/// Reads a key, without its secret. Permission: `organization:pats:create` for the caller's own
/// personal access token, `workspaces:manage-service-keys` in the key's
/// workspace for a service or legacy key bound to one, and
/// `organization:manage-members` otherwise.
#[utoipa::path(get, path = "/v1/keys/{key_id}", tag = "keys",
    params(("key_id" = Uuid, Path, description = "The key id")),
    responses((status = 200, body = Key), (status = "4XX", body = super::error::ErrorBody)))]
pub(super) async fn get(state: &AdminState, call: &Call, id: Uuid) -> Result<Reply, ApiError> {
    let (_, key) = authorize_key(state, call, id).await?;
    Reply::ok(&key)
}

/// Revokes a key for good. Permission: `organization:pats:create` for the caller's own
/// personal access token, `workspaces:manage-service-keys` in the key's
/// workspace for a service or legacy key bound to one, and
/// `organization:manage-members` otherwise.
#[utoipa::path(post, path = "/v1/keys/{key_id}/revoke", tag = "keys",
    params(("key_id" = Uuid, Path, description = "The key id")),
    responses((status = 200, body = Key), (status = "4XX", body = super::error::ErrorBody)))]
pub(super) async fn revoke(state: &AdminState, call: &Call, id: Uuid) -> Result<Reply, ApiError> {
    change(state, call, id, KeyChange::Revoke).await
}

/// Disables a key without deleting it. Permission: `organization:pats:create` for the caller's own
/// personal access token, `workspaces:manage-service-keys` in the key's
/// workspace for a service or legacy key bound to one, and
/// `organization:manage-members` otherwise.
#[utoipa::path(post, path = "/v1/keys/{key_id}/disable", tag = "keys",
    params(("key_id" = Uuid, Path, description = "The key id")),
    responses((status = 200, body = Key), (status = "4XX", body = super::error::ErrorBody)))]
pub(super) async fn disable(state: &AdminState, call: &Call, id: Uuid) -> Result<Reply, ApiError> {
    change(state, call, id, KeyChange::Disable).await
}

/// Re-enables a disabled key. Permission: `organization:pats:create` for the caller's own
/// personal access token, `workspaces:manage-service-keys` in the key's
/// workspace for a service or legacy key bound to one, and
/// `organization:manage-members` otherwise.
#[utoipa::path(post, path = "/v1/keys/{key_id}/enable", tag = "keys",
    params(("key_id" = Uuid, Path, description = "The key id")),
    responses((status = 200, body = Key), (status = "4XX", body = super::error::ErrorBody)))]
pub(super) async fn enable(state: &AdminState, call: &Call, id: Uuid) -> Result<Reply, ApiError> {
    change(state, call, id, KeyChange::Enable).await
}

/// Sets or clears a key's expiry. Permission: `organization:pats:create` for the caller's own
/// personal access token, `workspaces:manage-service-keys` in the key's
/// workspace for a service or legacy key bound to one, and
/// `organization:manage-members` otherwise.
#[utoipa::path(put, path = "/v1/keys/{key_id}/expiry", tag = "keys", request_body = SetExpiry,
    params(("key_id" = Uuid, Path, description = "The key id")),
    responses((status = 200, body = Key), (status = "4XX", body = super::error::ErrorBody)))]
pub(super) async fn set_expiry(
    state: &AdminState,
    call: &Call,
    id: Uuid,
) -> Result<Reply, ApiError> {
    let body: SetExpiry = call.json()?;
    change(state, call, id, KeyChange::Expire(body.expires_at)).await
}

/// Replaces a key with a new one and returns the new secret once. The old
/// key keeps working until the grace period ends. Permission: `organization:pats:create` for the caller's own
/// personal access token, `workspaces:manage-service-keys` in the key's
/// workspace for a service or legacy key bound to one, and
/// `organization:manage-members` otherwise.
#[utoipa::path(post, path = "/v1/keys/{key_id}/rotate", tag = "keys", request_body = Rotate,
    params(("key_id" = Uuid, Path, description = "The key id")),
    responses((status = 201, body = CreatedKey), (status = "4XX", body = super::error::ErrorBody)))]
pub(super) async fn rotate(state: &AdminState, call: &Call, id: Uuid) -> Result<Reply, ApiError> {
    let body: Rotate = call.json()?;
    let grace = body
        .grace_period_secs
        .unwrap_or(DEFAULT_ROTATION_GRACE_SECS);
    if !(0..=MAX_ROTATION_GRACE_SECS).contains(&grace) {
        return Err(ApiError::bad_request(
            "grace_period_secs",
            format!("must be from 0 to {MAX_ROTATION_GRACE_SECS} seconds"),
        ));
    }
    let (caller, _) = authorize_key(state, call, id).await?;
    let org = caller.org_id;
    let (key, secret) = state
        .write(Actor::of(&caller), move |s, actor| {
            s.rotate_key(actor, org, id, grace)
        })
        .await?;
    created(key, &secret)
}

async fn change(
    state: &AdminState,
    call: &Call,
    id: Uuid,
    change: KeyChange,
) -> Result<Reply, ApiError> {
    let (caller, _) = authorize_key(state, call, id).await?;
    let org = caller.org_id;
    let key = state
        .write(Actor::of(&caller), move |s, actor| {
            s.change_key(actor, org, id, change)
        })
        .await?;
    Reply::ok(&key)
}

/// Finds a key of the caller's organization and authorizes the caller to
/// manage it, by the rules in the module documentation.
async fn authorize_key(
    state: &AdminState,
    call: &Call,
    id: Uuid,
) -> Result<(Arc<Identity>, Key), ApiError> {
    let caller = state.caller(call).await?;
    let org = caller.org_id;
    let key = state.read(move |s| s.key_in(org, id)).await?;
    let own_token = key.kind == KeyKind::Personal.as_str()
        && matches!(caller.principal, Principal::User(user) if Some(user) == key.user_id);
    let caller = match (key.kind.as_str(), key.workspace_id) {
        _ if own_token => state.organization(call, "organization:pats:create").await?,
        ("service" | "legacy", Some(ws)) => {
            state
                .workspace(call, ws, "workspaces:manage-service-keys")
                .await?
                .identity
        }
        _ => {
            state
                .organization(call, "organization:manage-members")
                .await?
        }
    };
    Ok((caller, key))
}

fn caller_user(caller: &Identity) -> Result<Uuid, ApiError> {
    match (caller.kind, caller.principal) {
        (KeyKind::Personal, Principal::User(user)) => Ok(user),
        _ => Err(ApiError::bad_request(
            "x-api-key",
            "personal access tokens belong to users: call with a user's personal access token",
        )),
    }
}

fn created(key: Key, secret: &SecretKey) -> Result<Reply, ApiError> {
    Reply::created(&CreatedKey {
        key,
        api_key: secret.expose().to_string(),
    })
}
