//! Organization endpoints: the caller's organization, its plan, its
//! members, new shared organizations, the catalogues and the audit log.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::request::{Call, Reply};
use super::{AdminState, ApiError};
use crate::authz::permissions;
use crate::credential::KeyKind;
use crate::identity::Principal;
use crate::store::sqlite::audit::{AuditFilter, AuditRecord};
use crate::store::sqlite::directory::{Organization, PlanInfo, Workspace};
use crate::store::sqlite::keys::Key;
use crate::store::sqlite::members::Member;
use crate::store::sqlite::{Actor, Page};

/// A change to the organization; absent fields keep their value.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateOrganization {
    pub name: Option<String>,
    /// Replaces the whole settings object.
    #[schema(value_type = Option<Object>)]
    pub settings: Option<Value>,
}

/// The plan to move to.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPlan {
    /// `developer`, `plus` or `enterprise`.
    pub plan: String,
}

/// A shared organization to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrganization {
    pub name: String,
    /// Defaults to `enterprise`.
    pub plan: Option<String>,
}

/// A new shared organization, with the creator's first personal access
/// token in it.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedOrganization {
    pub organization: Organization,
    pub workspace: Workspace,
    pub key: Key,
    /// The token's secret. It is shown only in this reply.
    pub api_key: String,
}

/// A member's new organization role.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetRole {
    /// A role id, such as `ORGANIZATION_ADMIN`, `ORGANIZATION_USER`,
    /// `WORKSPACE_EDITOR` or a custom role's id.
    pub role: String,
}

/// The permission catalogue.
#[derive(Debug, Serialize, ToSchema)]
pub struct PermissionCatalogue {
    /// Permissions that custom roles may hold.
    pub workspace: Vec<String>,
    /// Held through the organization roles only.
    pub organization: Vec<String>,
}

/// Paging of a list.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct PageParams {
    /// Items per page, 1 to 200; 50 by default.
    limit: Option<u32>,
    /// The `next` value of the previous page.
    cursor: Option<String>,
}

/// Filters of the audit log.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct AuditParams {
    /// Such as `user:<id>`, `service_account:<id>` or `cli`.
    actor: Option<String>,
    /// Unix seconds, inclusive.
    since: Option<i64>,
    /// Unix seconds, exclusive.
    until: Option<i64>,
}

/// Reads the caller's organization. Permission: `organization:read`.
#[utoipa::path(get, path = "/v1/organization", tag = "organization",
    responses((status = 200, body = Organization), (status = "4XX", body = super::error::ErrorBody)))]
pub(super) async fn get(state: &AdminState, call: &Call) -> Result<Reply, ApiError> {
    let caller = state.organization(call, "organization:read").await?;
    let org = caller.org_id;
    Reply::ok(&state.read(move |s| s.organization(org)).await?)
}

/// Renames the organization or replaces its settings. Permission:
/// `organization:manage`.
#[utoipa::path(patch, path = "/v1/organization", tag = "organization", request_body = UpdateOrganization,
    responses((status = 200, body = Organization), (status = "4XX", body = super::error::ErrorBody)))]
pub(super) async fn update(state: &AdminState, call: &Call) -> Result<Reply, ApiError> {
    let caller = state.organization(call, "organization:manage").await?;
    let body: UpdateOrganization = call.json()?;
    let org = caller.org_id;
    let updated = state
        .write(Actor::of(&caller), move |s, actor| {
            s.update_organization(actor, org, body.name.as_deref(), body.settings.as_ref())
        })
        .await?;
    Reply::ok(&updated)
}

/// Moves the organization to another plan. Permission:
/// `organization:manage-billing`.
#[utoipa::path(put, path = "/v1/organization/plan", tag = "organization", request_body = SetPlan,
    responses((status = 200, body = Organization), (status = "4XX", body = super::error::ErrorBody)))]
pub(super) async fn set_plan(state: &AdminState, call: &Call) -> Result<Reply, ApiError> {
    let caller = state
        .organization(call, "organization:manage-billing")
        .await?;
    let body: SetPlan = call.json()?;
    let org = caller.org_id;
    let updated = state
        .write(Actor::of(&caller), move |s, actor| {
            s.set_plan(actor, org, &body.plan)
        })
        .await?;
    Reply::ok(&updated)
}

/// Lists the plans. Permission: `organization:read`.
#[utoipa::path(get, path = "/v1/plans", tag = "organization",
    responses((status = 200, body = Vec<PlanInfo>), (status = "4XX", body = super::error::ErrorBody)))]
pub(super) async fn plans(state: &AdminState, call: &Call) -> Result<Reply, ApiError> {
    state.organization(call, "organization:read").await?;
    Reply::ok(&state.read(|s| s.plans()).await?)
}

/// Lists every permission string. Permission: `organization:read`.
#[utoipa::path(get, path = "/v1/permissions", tag = "organization",
    responses((status = 200, body = PermissionCatalogue), (status = "4XX", body = super::error::ErrorBody)))]
pub(super) async fn permission_catalogue(
    state: &AdminState,
    call: &Call,
) -> Result<Reply, ApiError> {
    state.organization(call, "organization:read").await?;
    Reply::ok(&PermissionCatalogue {
        workspace: permissions::workspace_permissions(),
        organization: permissions::organization_permissions(),
    })
}

/// Creates a shared organization whose Organization Admin is the caller,
/// with one workspace, and returns the caller's first personal access
/// token in it. Permission: none beyond a valid personal access token of
/// any organization, because the new organization has no roles yet.
#[utoipa::path(post, path = "/v1/organizations", tag = "organization", request_body = CreateOrganization,
    responses((status = 201, body = CreatedOrganization), (status = "4XX", body = super::error::ErrorBody)))]
pub(super) async fn create(state: &AdminState, call: &Call) -> Result<Reply, ApiError> {
    let caller = state.caller(call).await?;
    let (KeyKind::Personal, Principal::User(user)) = (caller.kind, caller.principal) else {
        return Err(ApiError::bad_request(
            "x-api-key",
            "only a user's personal access token can create an organization",
        ));
    };
    let body: CreateOrganization = call.json()?;
    let plan = body.plan.unwrap_or_else(|| "enterprise".to_string());
    let created = state
        .write(Actor::of(&caller), move |s, actor| {
            let created = s.create_shared_organization(actor, &body.name, &plan, user)?;
            Ok(CreatedOrganization {
                organization: created.organization,
                workspace: created.workspace,
                key: created.key,
                api_key: created.secret.expose().to_string(),
            })
        })
        .await?;
    Reply::created(&created)
}

/// Lists the organization's members. Permission: `organization:read`.
#[utoipa::path(get, path = "/v1/members", tag = "members", params(PageParams),
    responses((status = 200, body = Page<Member>), (status = "4XX", body = super::error::ErrorBody)))]
pub(super) async fn members(state: &AdminState, call: &Call) -> Result<Reply, ApiError> {
    let caller = state.organization(call, "organization:read").await?;
    let (org, page) = (caller.org_id, call.page()?);
    Reply::ok(&state.read(move |s| s.list_members(org, page)).await?)
}

/// Changes a member's organization role. Permission:
/// `organization:manage-members`.
#[utoipa::path(patch, path = "/v1/members/{user_id}", tag = "members", request_body = SetRole,
    params(("user_id" = Uuid, Path, description = "The member's user id")),
    responses((status = 200, body = Member), (status = "4XX", body = super::error::ErrorBody)))]
pub(super) async fn set_member_role(
    state: &AdminState,
    call: &Call,
    user: Uuid,
) -> Result<Reply, ApiError> {
    let caller = state
        .organization(call, "organization:manage-members")
        .await?;
    let body: SetRole = call.json()?;
    let org = caller.org_id;
    let member = state
        .write(Actor::of(&caller), move |s, actor| {
            s.set_member_role(actor, org, user, &body.role)
        })
        .await?;
    Reply::ok(&member)
}

/// Removes a user from the organization and its workspaces, and revokes
/// the user's personal access tokens in it. Permission:
/// `organization:manage-members`.
#[utoipa::path(delete, path = "/v1/members/{user_id}", tag = "members",
    params(("user_id" = Uuid, Path, description = "The member's user id")),
    responses((status = 204), (status = "4XX", body = super::error::ErrorBody)))]
pub(super) async fn remove_member(
    state: &AdminState,
    call: &Call,
    user: Uuid,
) -> Result<Reply, ApiError> {
    let caller = state
        .organization(call, "organization:manage-members")
        .await?;
    let org = caller.org_id;
    state
        .write(Actor::of(&caller), move |s, actor| {
            s.remove_member(actor, org, user)
        })
        .await?;
    Reply::no_content()
}

/// Lists the organization's audit records, newest first. Permission:
/// `organization:manage`.
#[utoipa::path(get, path = "/v1/audit-log", tag = "audit", params(AuditParams, PageParams),
    responses((status = 200, body = Page<AuditRecord>), (status = "4XX", body = super::error::ErrorBody)))]
pub(super) async fn audit_log(state: &AdminState, call: &Call) -> Result<Reply, ApiError> {
    let caller = state.organization(call, "organization:manage").await?;
    let filter = AuditFilter {
        organization_id: Some(caller.org_id),
        actor: call.query("actor")?.map(str::to_string),
        since: call.query_i64("since")?,
        until: call.query_i64("until")?,
    };
    let page = call.page()?;
    Reply::ok(&state.read(move |s| s.audit_log(&filter, page)).await?)
}
