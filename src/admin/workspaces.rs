//! Workspace endpoints: workspaces, their members and service accounts,
//! and their retention and usage-limit settings.

use serde::{Deserialize, Deserializer};
use utoipa::ToSchema;
use uuid::Uuid;

use super::organization::{PageParams, SetRole};
use super::request::{Call, Reply};
use super::{AdminState, ApiError};
use crate::identity::RetentionTier;
use crate::store::sqlite::directory::{SettingsChange, Workspace, WorkspaceSettings};
use crate::store::sqlite::members::Member;
use crate::store::sqlite::roles::ServiceAccount;
use crate::store::sqlite::{Actor, Page};

/// A workspace to create, or its new name.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceName {
    pub name: String,
}

/// A change to a workspace's settings; absent fields keep their value.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSettings {
    /// `base` (14 days) or `extended` (400 days).
    pub retention_tier: Option<String>,
    pub usage_limits: Option<UpdateUsageLimits>,
}

/// New monthly limits; `null` removes a limit, and an absent field keeps
/// it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUsageLimits {
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>)]
    pub all_traces: Option<Option<i64>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>)]
    pub extended_traces: Option<Option<i64>>,
}

/// Tells a field sent as `null` (`Some(None)`) from an absent one (`None`).
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Option<i64>>, D::Error> {
    Option::<i64>::deserialize(deserializer).map(Some)
}

/// Lists the workspaces the caller can reach: all of them for an
/// Organization Admin. Permission: `organization:read`.
#[utoipa::path(get, path = "/v1/workspaces", tag = "workspaces", params(PageParams),
    responses((status = 200, body = Page<Workspace>), (status = "4XX", body = super::error::ErrorBody)))]
pub(super) async fn list(state: &AdminState, call: &Call) -> Result<Reply, ApiError> {
    let caller = state.organization(call, "organization:read").await?;
    let reachable: Vec<Uuid> = caller.workspaces.iter().map(|g| g.workspace_id).collect();
    let (org, page) = (caller.org_id, call.page()?);
    Reply::ok(
        &state
            .read(move |s| s.list_workspaces(org, Some(&reachable), page))
            .await?,
    )
}

/// Creates a workspace, within the plan's maximum, with the tag keys
/// `Application` and `Environment`. Permission:
/// `organization:manage-workspaces`.
#[utoipa::path(post, path = "/v1/workspaces", tag = "workspaces", request_body = WorkspaceName,
    responses((status = 201, body = Workspace), (status = "4XX", body = super::error::ErrorBody)))]
pub(super) async fn create(state: &AdminState, call: &Call) -> Result<Reply, ApiError> {
    let caller = state
        .organization(call, "organization:manage-workspaces")
        .await?;
    let body: WorkspaceName = call.json()?;
    let org = caller.org_id;
    let workspace = state
        .write(Actor::of(&caller), move |s, actor| {
            s.add_workspace(actor, org, &body.name)
        })
        .await?;
    Reply::created(&workspace)
}

/// Reads a workspace. Permission: `workspaces:read` in it.
#[utoipa::path(get, path = "/v1/workspaces/{workspace_id}", tag = "workspaces",
    params(("workspace_id" = Uuid, Path, description = "The workspace id")),
    responses((status = 200, body = Workspace), (status = "4XX", body = super::error::ErrorBody)))]
pub(super) async fn get(state: &AdminState, call: &Call, ws: Uuid) -> Result<Reply, ApiError> {
    let access = state.workspace(call, ws, "workspaces:read").await?;
    let org = access.identity.org_id;
    Reply::ok(&state.read(move |s| s.workspace(org, ws)).await?)
}

/// Renames a workspace. Permission: `workspaces:manage` in it.
#[utoipa::path(patch, path = "/v1/workspaces/{workspace_id}", tag = "workspaces", request_body = WorkspaceName,
    params(("workspace_id" = Uuid, Path, description = "The workspace id")),
    responses((status = 200, body = Workspace), (status = "4XX", body = super::error::ErrorBody)))]
pub(super) async fn rename(state: &AdminState, call: &Call, ws: Uuid) -> Result<Reply, ApiError> {
    let access = state.workspace(call, ws, "workspaces:manage").await?;
    let body: WorkspaceName = call.json()?;
    let org = access.identity.org_id;
    let workspace = state
        .write(Actor::of(&access.identity), move |s, actor| {
            s.rename_workspace(actor, org, ws, &body.name)
        })
        .await?;
    Reply::ok(&workspace)
}

/// Deletes a workspace and revokes its keys at once. Permission:
/// `organization:manage-workspaces`.
#[utoipa::path(delete, path = "/v1/workspaces/{workspace_id}", tag = "workspaces",
    params(("workspace_id" = Uuid, Path, description = "The workspace id")),
    responses((status = 204), (status = "4XX", body = super::error::ErrorBody)))]
pub(super) async fn delete(state: &AdminState, call: &Call, ws: Uuid) -> Result<Reply, ApiError> {
    let caller = state
        .organization(call, "organization:manage-workspaces")
        .await?;
    let org = caller.org_id;
    state
        .write(Actor::of(&caller), move |s, actor| {
            s.delete_workspace(actor, org, ws)
        })
        .await?;
    Reply::no_content()
}

/// Lists a workspace's members. Permission: `workspaces:read` in it.
#[utoipa::path(get, path = "/v1/workspaces/{workspace_id}/members", tag = "workspaces",
    params(("workspace_id" = Uuid, Path, description = "The workspace id"), PageParams),
    responses((status = 200, body = Page<Member>), (status = "4XX", body = super::error::ErrorBody)))]
pub(super) async fn members(state: &AdminState, call: &Call, ws: Uuid) -> Result<Reply, ApiError> {
    let access = state.workspace(call, ws, "workspaces:read").await?;
    let (org, page) = (access.identity.org_id, call.page()?);
    Reply::ok(
        &state
            .read(move |s| s.list_workspace_members(org, ws, page))
            .await?,
    )
}

/// Adds an organization member to the workspace with a workspace role, or
/// changes that role. Permission: `workspaces:manage-members` in it.
#[utoipa::path(put, path = "/v1/workspaces/{workspace_id}/members/{user_id}", tag = "workspaces",
    request_body = SetRole,
    params(("workspace_id" = Uuid, Path, description = "The workspace id"),
           ("user_id" = Uuid, Path, description = "The user id")),
    responses((status = 200, body = Member), (status = "4XX", body = super::error::ErrorBody)))]
pub(super) async fn set_member(
    state: &AdminState,
    call: &Call,
    ws: Uuid,
    user: Uuid,
) -> Result<Reply, ApiError> {
    let access = state
        .workspace(call, ws, "workspaces:manage-members")
        .await?;
    let body: SetRole = call.json()?;
    let org = access.identity.org_id;
    let member = state
        .write(Actor::of(&access.identity), move |s, actor| {
            s.set_workspace_member(actor, org, ws, user, &body.role)
        })
        .await?;
    Reply::ok(&member)
}

/// Removes a member from the workspace. Permission:
/// `workspaces:manage-members` in it.
#[utoipa::path(delete, path = "/v1/workspaces/{workspace_id}/members/{user_id}", tag = "workspaces",
    params(("workspace_id" = Uuid, Path, description = "The workspace id"),
           ("user_id" = Uuid, Path, description = "The user id")),
    responses((status = 204), (status = "4XX", body = super::error::ErrorBody)))]
pub(super) async fn remove_member(
    state: &AdminState,
    call: &Call,
    ws: Uuid,
    user: Uuid,
) -> Result<Reply, ApiError> {
    let access = state
        .workspace(call, ws, "workspaces:manage-members")
        .await?;
    let org = access.identity.org_id;
    state
        .write(Actor::of(&access.identity), move |s, actor| {
            s.remove_workspace_member_as(actor, org, ws, user)
        })
        .await?;
    Reply::no_content()
}

/// Gives a service account a workspace role, or changes it. Permission:
/// `workspaces:manage-members` in the workspace.
#[utoipa::path(put, path = "/v1/workspaces/{workspace_id}/service-accounts/{service_account_id}",
    tag = "service accounts", request_body = SetRole,
    params(("workspace_id" = Uuid, Path, description = "The workspace id"),
           ("service_account_id" = Uuid, Path, description = "The service account id")),
    responses((status = 200, body = ServiceAccount), (status = "4XX", body = super::error::ErrorBody)))]
pub(super) async fn set_service_account(
    state: &AdminState,
    call: &Call,
    ws: Uuid,
    account: Uuid,
) -> Result<Reply, ApiError> {
    let access = state
        .workspace(call, ws, "workspaces:manage-members")
        .await?;
    let body: SetRole = call.json()?;
    let org = access.identity.org_id;
    let updated = state
        .write(Actor::of(&access.identity), move |s, actor| {
            s.set_service_account_workspace(actor, org, ws, account, Some(&body.role))
        })
        .await?;
    Reply::ok(&updated)
}

/// Removes a service account's role in the workspace. Permission:
/// `workspaces:manage-members` in the workspace.
#[utoipa::path(delete, path = "/v1/workspaces/{workspace_id}/service-accounts/{service_account_id}",
    tag = "service accounts",
    params(("workspace_id" = Uuid, Path, description = "The workspace id"),
           ("service_account_id" = Uuid, Path, description = "The service account id")),
    responses((status = 200, body = ServiceAccount), (status = "4XX", body = super::error::ErrorBody)))]
pub(super) async fn remove_service_account(
    state: &AdminState,
    call: &Call,
    ws: Uuid,
    account: Uuid,
) -> Result<Reply, ApiError> {
    let access = state
        .workspace(call, ws, "workspaces:manage-members")
        .await?;
    let org = access.identity.org_id;
    let updated = state
        .write(Actor::of(&access.identity), move |s, actor| {
            s.set_service_account_workspace(actor, org, ws, account, None)
        })
        .await?;
    Reply::ok(&updated)
}

/// Reads a workspace's retention tier and usage limits. Permission:
/// `organization:read`.
#[utoipa::path(get, path = "/v1/workspaces/{workspace_id}/settings", tag = "workspaces",
    params(("workspace_id" = Uuid, Path, description = "The workspace id")),
    responses((status = 200, body = WorkspaceSettings), (status = "4XX", body = super::error::ErrorBody)))]
pub(super) async fn settings(state: &AdminState, call: &Call, ws: Uuid) -> Result<Reply, ApiError> {
    let caller = state.organization(call, "organization:read").await?;
    let org = caller.org_id;
    Reply::ok(&state.read(move |s| s.workspace_settings(org, ws)).await?)
}

/// Reads a workspace's usage in the current calendar month (UTC) with its
/// limits. Permission: `organization:read`. Counts are live when the admin
/// API runs next to the gateway, and lag by up to the usage flush interval
/// when read from the store.
#[utoipa::path(get, path = "/v1/workspaces/{workspace_id}/usage", tag = "workspaces",
    params(("workspace_id" = Uuid, Path, description = "The workspace id")),
    responses((status = 200, body = crate::store::limits::WorkspaceUsage),
        (status = "4XX", body = super::error::ErrorBody)))]
pub(super) async fn usage(state: &AdminState, call: &Call, ws: Uuid) -> Result<Reply, ApiError> {
    let caller = state.organization(call, "organization:read").await?;
    let org = caller.org_id;
    // Answers 404 for a workspace of another organization.
    state.read(move |s| s.workspace_settings(org, ws)).await?;
    let usage = match state.limits() {
        Some(limits) => limits.current_usage(ws),
        None => {
            let now = time::OffsetDateTime::now_utc();
            let month = format!("{:04}-{:02}", now.year(), u8::from(now.month()));
            state
                .read(move |s| Ok(s.usage_for_workspace(ws, &month)?))
                .await?
        }
    };
    Reply::ok(&usage)
}

/// Changes a workspace's retention tier and usage limits. Permission:
/// `organization:manage-settings`.
#[utoipa::path(patch, path = "/v1/workspaces/{workspace_id}/settings", tag = "workspaces",
    request_body = UpdateSettings,
    params(("workspace_id" = Uuid, Path, description = "The workspace id")),
    responses((status = 200, body = WorkspaceSettings), (status = "4XX", body = super::error::ErrorBody)))]
pub(super) async fn update_settings(
    state: &AdminState,
    call: &Call,
    ws: Uuid,
) -> Result<Reply, ApiError> {
    let caller = state
        .organization(call, "organization:manage-settings")
        .await?;
    let body: UpdateSettings = call.json()?;
    let retention_tier = body
        .retention_tier
        .map(|tier| {
            RetentionTier::from_name(&tier).ok_or_else(|| {
                ApiError::bad_request(
                    "retention_tier",
                    format!("unknown retention tier {tier:?}: expected base or extended"),
                )
            })
        })
        .transpose()?;
    let limits = body.usage_limits;
    let change = SettingsChange {
        retention_tier,
        all_traces: limits.as_ref().and_then(|l| l.all_traces),
        extended_traces: limits.as_ref().and_then(|l| l.extended_traces),
    };
    let org = caller.org_id;
    let updated = state
        .write(Actor::of(&caller), move |s, actor| {
            s.update_workspace_settings(actor, org, ws, &change)
        })
        .await?;
    if let Some(limits) = state.limits() {
        limits.refresh().await;
    }
    Reply::ok(&updated)
}
