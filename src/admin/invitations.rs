//! Invitations into an organization: create, list, revoke and accept.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::organization::PageParams;
use super::request::{Call, Reply};
use super::{AdminState, ApiError};
use crate::authz::ORGANIZATION_USER;
use crate::credential::KeyKind;
use crate::error::Rejection;
use crate::identity::Principal;
use crate::store::sqlite::keys::Key;
use crate::store::sqlite::members::{Invitation, NewInvitation};
use crate::store::sqlite::{Actor, Page};

/// An invitation to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateInvitation {
    pub email: String,
    /// `ORGANIZATION_ADMIN` or `ORGANIZATION_USER`; defaults to
    /// `ORGANIZATION_USER`.
    pub role: Option<String>,
    /// A workspace the invitee joins on accepting.
    pub workspace_id: Option<Uuid>,
    /// The workspace role there; defaults to `WORKSPACE_VIEWER`.
    pub workspace_role: Option<String>,
}

/// An accepted invitation, with the invitee's first personal access token
/// in the organization joined.
#[derive(Debug, Serialize, ToSchema)]
pub struct AcceptedInvitation {
    pub invitation: Invitation,
    pub key: Key,
    /// The token's secret. It is shown only in this reply.
    pub api_key: String,
}

/// Lists the organization's invitations, newest first. Permission:
/// `organization:read`.
#[utoipa::path(get, path = "/v1/invitations", tag = "members", params(PageParams),
    responses((status = 200, body = Page<Invitation>), (status = "4XX", body = super::error::ErrorBody)))]
pub(super) async fn list(state: &AdminState, call: &Call) -> Result<Reply, ApiError> {
    let caller = state.organization(call, "organization:read").await?;
    let (org, page) = (caller.org_id, call.page()?);
    Reply::ok(&state.read(move |s| s.list_invitations(org, page)).await?)
}

/// Invites an email address into the organization. Permission:
/// `organization:manage-members`. When the `[admin]
/// workspace_admins_can_invite` setting is on, `workspaces:manage-members`
/// in `workspace_id` also suffices, for the Organization User role only.
/// Personal organizations cannot invite.
#[utoipa::path(post, path = "/v1/invitations", tag = "members", request_body = CreateInvitation,
    responses((status = 201, body = Invitation), (status = "4XX", body = super::error::ErrorBody)))]
pub(super) async fn create(state: &AdminState, call: &Call) -> Result<Reply, ApiError> {
    let body: CreateInvitation = call.json()?;
    let role = body.role.unwrap_or_else(|| ORGANIZATION_USER.to_string());
    let caller = match state
        .organization(call, "organization:manage-members")
        .await
    {
        Ok(caller) => caller,
        Err(ApiError::Auth(Rejection::Forbidden { permission }))
            if state.workspace_admins_can_invite =>
        {
            let Some(ws) = body.workspace_id else {
                return Err(Rejection::Forbidden { permission }.into());
            };
            let access = state
                .workspace(call, ws, "workspaces:manage-members")
                .await?;
            if role != ORGANIZATION_USER {
                return Err(Rejection::Forbidden { permission }.into());
            }
            access.identity
        }
        Err(error) => return Err(error),
    };
    if body.workspace_role.is_some() && body.workspace_id.is_none() {
        return Err(ApiError::bad_request(
            "workspace_id",
            "is required with workspace_role",
        ));
    }
    let new = NewInvitation {
        email: body.email,
        role_id: role,
        workspace: body.workspace_id.map(|ws| {
            let role = body
                .workspace_role
                .unwrap_or_else(|| crate::authz::WORKSPACE_VIEWER.to_string());
            (ws, role)
        }),
    };
    let org = caller.org_id;
    let invitation = state
        .write(Actor::of(&caller), move |s, actor| {
            s.create_invitation(actor, org, &new)
        })
        .await?;
    Reply::created(&invitation)
}

/// Revokes a pending invitation. Permission: `organization:manage-members`.
#[utoipa::path(delete, path = "/v1/invitations/{invitation_id}", tag = "members",
    params(("invitation_id" = Uuid, Path, description = "The invitation id")),
    responses((status = 200, body = Invitation), (status = "4XX", body = super::error::ErrorBody)))]
pub(super) async fn revoke(state: &AdminState, call: &Call, id: Uuid) -> Result<Reply, ApiError> {
    let caller = state
        .organization(call, "organization:manage-members")
        .await?;
    let org = caller.org_id;
    let invitation = state
        .write(Actor::of(&caller), move |s, actor| {
            s.revoke_invitation(actor, org, id)
        })
        .await?;
    Reply::ok(&invitation)
}

/// Accepts an invitation addressed to the caller's email and returns the
/// caller's first personal access token in the organization joined.
/// Permission: none beyond a valid personal access token of the invitee,
/// from any organization, such as the invitee's personal one.
#[utoipa::path(post, path = "/v1/invitations/{invitation_id}/accept", tag = "members",
    params(("invitation_id" = Uuid, Path, description = "The invitation id")),
    responses((status = 200, body = AcceptedInvitation), (status = "4XX", body = super::error::ErrorBody)))]
pub(super) async fn accept(state: &AdminState, call: &Call, id: Uuid) -> Result<Reply, ApiError> {
    let caller = state.caller(call).await?;
    let (KeyKind::Personal, Principal::User(user)) = (caller.kind, caller.principal) else {
        return Err(ApiError::bad_request(
            "x-api-key",
            "only a user's personal access token can accept an invitation",
        ));
    };
    let accepted = state
        .write(Actor::of(&caller), move |s, actor| {
            s.accept_invitation(actor, id, user)
        })
        .await?;
    Reply::ok(&AcceptedInvitation {
        invitation: accepted.invitation,
        key: accepted.key,
        api_key: accepted.secret.expose().to_string(),
    })
}
