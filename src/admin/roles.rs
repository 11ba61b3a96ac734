//! Role and service account endpoints.

use serde::Deserialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::organization::PageParams;
use super::request::{Call, Reply};
use super::{AdminState, ApiError};
use crate::store::sqlite::roles::{Role, RoleChange, ServiceAccount};
use crate::store::sqlite::{Actor, Page};

/// A custom workspace role to create, or a change to one; on a change,
/// absent fields keep their value.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleBody {
    pub name: Option<String>,
    pub description: Option<String>,
    /// Workspace permissions from `GET /v1/permissions`.
    pub permissions: Option<Vec<String>>,
}

impl From<RoleBody> for RoleChange {
    fn from(body: RoleBody) -> Self {
        RoleChange {
            name: body.name,
            description: body.description,
            permissions: body.permissions,
        }
    }
}

/// A service account to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateServiceAccount {
    pub name: String,
    /// `ORGANIZATION_ADMIN` or `ORGANIZATION_USER`; by default the
    /// Organization User role where the plan has it.
    pub role: Option<String>,
}

/// Lists the built-in roles and the organization's custom roles.
/// Permission: `organization:read`.
#[utoipa::path(get, path = "/v1/roles", tag = "roles", params(PageParams),
    responses((status = 200, body = Page<Role>), (status = "4XX", body = super::error::ErrorBody)))]
pub(super) async fn list(state: &AdminState, call: &Call) -> Result<Reply, ApiError> {
    let caller = state.organization(call, "organization:read").await?;
    let (org, page) = (caller.org_id, call.page()?);
    Reply::ok(&state.read(move |s| s.list_roles(org, page)).await?)
}

/// Creates a custom workspace role; only plans with RBAC have them.
/// Permission: `organization:manage-roles`.
#[utoipa::path(post, path = "/v1/roles", tag = "roles", request_body = RoleBody,
    responses((status = 201, body = Role), (status = "4XX", body = super::error::ErrorBody)))]
pub(super) async fn create(state: &AdminState, call: &Call) -> Result<Reply, ApiError> {
    let caller = state
        .organization(call, "organization:manage-roles")
        .await?;
    let change: RoleChange = call.json::<RoleBody>()?.into();
    let org = caller.org_id;
    let role = state
        .write(Actor::of(&caller), move |s, actor| {
            s.create_role(actor, org, &change)
        })
        .await?;
    Reply::created(&role)
}

/// Changes a custom role; built-in roles cannot change. Permission:
/// `organization:manage-roles`.
#[utoipa::path(patch, path = "/v1/roles/{role_id}", tag = "roles", request_body = RoleBody,
    params(("role_id" = String, Path, description = "The role id")),
    responses((status = 200, body = Role), (status = "4XX", body = super::error::ErrorBody)))]
pub(super) async fn update(state: &AdminState, call: &Call, id: &str) -> Result<Reply, ApiError> {
    let caller = state
        .organization(call, "organization:manage-roles")
        .await?;
    let change: RoleChange = call.json::<RoleBody>()?.into();
    let (org, id) = (caller.org_id, id.to_string());
    let role = state
        .write(Actor::of(&caller), move |s, actor| {
            s.update_role(actor, org, &id, &change)
        })
        .await?;
    Reply::ok(&role)
}

/// Deletes a custom role that no member or service account holds. Permission:
/// `organization:manage-roles`.
#[utoipa::path(delete, path = "/v1/roles/{role_id}", tag = "roles",
    params(("role_id" = String, Path, description = "The role id")),
    responses((status = 204), (status = "4XX", body = super::error::ErrorBody)))]
pub(super) async fn delete(state: &AdminState, call: &Call, id: &str) -> Result<Reply, ApiError> {
    let caller = state
        .organization(call, "organization:manage-roles")
        .await?;
    let (org, id) = (caller.org_id, id.to_string());
    state
        .write(Actor::of(&caller), move |s, actor| {
            s.delete_role(actor, org, &id)
        })
        .await?;
    Reply::no_content()
}

/// Lists the organization's service accounts. Permission:
/// `organization:read`.
#[utoipa::path(get, path = "/v1/service-accounts", tag = "service accounts", params(PageParams),
    responses((status = 200, body = Page<ServiceAccount>), (status = "4XX", body = super::error::ErrorBody)))]
pub(super) async fn list_service_accounts(
    state: &AdminState,
    call: &Call,
) -> Result<Reply, ApiError> {
    let caller = state.organization(call, "organization:read").await?;
    let (org, page) = (caller.org_id, call.page()?);
    Reply::ok(
        &state
            .read(move |s| s.list_service_accounts(org, page))
            .await?,
    )
}

/// Creates a service account. Permission: `organization:manage-members`.
#[utoipa::path(post, path = "/v1/service-accounts", tag = "service accounts", request_body = CreateServiceAccount,
    responses((status = 201, body = ServiceAccount), (status = "4XX", body = super::error::ErrorBody)))]
pub(super) async fn create_service_account(
    state: &AdminState,
    call: &Call,
) -> Result<Reply, ApiError> {
    let caller = state
        .organization(call, "organization:manage-members")
        .await?;
    let body: CreateServiceAccount = call.json()?;
    let org = caller.org_id;
    let account = state
        .write(Actor::of(&caller), move |s, actor| {
            s.add_service_account(actor, org, &body.name, body.role.as_deref())
        })
        .await?;
    Reply::created(&account)
}

/// Deletes a service account with its keys. Permission:
/// `organization:manage-members`.
#[utoipa::path(delete, path = "/v1/service-accounts/{service_account_id}", tag = "service accounts",
    params(("service_account_id" = Uuid, Path, description = "The service account id")),
    responses((status = 204), (status = "4XX", body = super::error::ErrorBody)))]
pub(super) async fn delete_service_account(
    state: &AdminState,
    call: &Call,
    id: Uuid,
) -> Result<Reply, ApiError> {
    let caller = state
        .organization(call, "organization:manage-members")
        .await?;
    let org = caller.org_id;
    state
        .write(Actor::of(&caller), move |s, actor| {
            s.delete_service_account(actor, org, id)
        })
        .await?;
    Reply::no_content()
}
