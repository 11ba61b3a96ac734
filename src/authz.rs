//! Authorization: the role rules of the access model, and the per-request
//! decision.
//!
//! [`resolve_identity`] turns store records into an [`Identity`] (who the
//! key acts for, and its role in each workspace it can reach). The identity
//! is cached; [`authorize`] runs on every request, so a key cached after a
//! read is still checked again for a write.

pub mod permissions;

use std::collections::HashMap;
use std::sync::Arc;

use http::HeaderValue;
use uuid::Uuid;

use crate::credential::KeyKind;
use crate::error::Rejection;
use crate::identity::{EffectiveRole, Identity, KeyState, Principal, WorkspaceGrant};
use crate::store::{KeyRecord, PrincipalRecord, RoleRecord};

/// Built-in organization role: full control, and Admin in every workspace.
pub const ORGANIZATION_ADMIN: &str = "ORGANIZATION_ADMIN";
/// Built-in organization role: reads the organization, works in the
/// workspaces it is added to.
pub const ORGANIZATION_USER: &str = "ORGANIZATION_USER";
/// Built-in workspace role: everything.
pub const WORKSPACE_ADMIN: &str = "WORKSPACE_ADMIN";
/// Built-in workspace role: everything but workspace management.
pub const WORKSPACE_EDITOR: &str = "WORKSPACE_EDITOR";
/// Built-in workspace role: reads only.
pub const WORKSPACE_VIEWER: &str = "WORKSPACE_VIEWER";

/// Scope of a role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleScope {
    Organization,
    Workspace,
}

/// A built-in role: id, display name, scope and permissions.
pub struct BuiltinRole {
    pub id: &'static str,
    pub display_name: &'static str,
    pub scope: RoleScope,
    pub permissions: fn() -> Vec<String>,
}

/// The built-in roles. They cannot be edited.
pub const BUILTIN_ROLES: &[BuiltinRole] = &[
    BuiltinRole {
        id: ORGANIZATION_ADMIN,
        display_name: "Organization Admin",
        scope: RoleScope::Organization,
        permissions: permissions::organization_admin,
    },
    BuiltinRole {
        id: ORGANIZATION_USER,
        display_name: "Organization User",
        scope: RoleScope::Organization,
        permissions: permissions::organization_user,
    },
    BuiltinRole {
        id: WORKSPACE_ADMIN,
        display_name: "Admin",
        scope: RoleScope::Workspace,
        permissions: permissions::workspace_admin,
    },
    BuiltinRole {
        id: WORKSPACE_EDITOR,
        display_name: "Editor",
        scope: RoleScope::Workspace,
        permissions: permissions::workspace_editor,
    },
    BuiltinRole {
        id: WORKSPACE_VIEWER,
        display_name: "Viewer",
        scope: RoleScope::Workspace,
        permissions: permissions::workspace_viewer,
    },
];

/// Builds the identity of a key from its store records, applying the plan
/// rules:
///
/// - on a plan without the Organization User role (single-workspace plans),
///   every member is an Organization Admin;
/// - an Organization Admin is Admin in every workspace of the organization;
/// - on a plan without RBAC, every workspace member is Admin;
/// - a legacy key acts as an Editor (create, read, update and delete on all
///   resources) in its own workspace, whoever created it.
pub fn resolve_identity(key: &KeyRecord, principal: &PrincipalRecord) -> Identity {
    let state = if key.revoked_at.is_some() {
        KeyState::Revoked
    } else if key.disabled {
        KeyState::Disabled
    } else {
        KeyState::Active
    };
    let mut roles = RoleCache::default();

    let organization_role = match key.kind {
        KeyKind::Legacy => None,
        KeyKind::Personal | KeyKind::Service => organization_role(principal)
            .map(|(name, permissions)| Arc::new(EffectiveRole::new(name, permissions))),
    };
    let (who, grants) = match key.kind {
        KeyKind::Legacy => {
            let who = key.user_id.map_or(Principal::Workspace, Principal::User);
            let grants = key
                .workspace_id
                .and_then(|ws| principal.workspaces.iter().find(|w| w.id == ws))
                .map(|ws| {
                    let role = roles.get(WORKSPACE_EDITOR, permissions::workspace_editor());
                    WorkspaceGrant::new(ws.id, ws.retention, role)
                })
                .into_iter()
                .collect();
            (who, grants)
        }
        KeyKind::Personal | KeyKind::Service => {
            let who = match (key.kind, key.user_id, key.service_account_id) {
                (KeyKind::Personal, Some(user), _) => Principal::User(user),
                (KeyKind::Service, _, Some(account)) => Principal::ServiceAccount(account),
                // A key whose owner is gone reaches nothing.
                _ => return orphan(key, state),
            };
            let grants = member_grants(principal, &mut roles)
                .into_iter()
                .filter(|g| key.workspace_id.is_none_or(|ws| ws == g.workspace_id))
                .collect();
            (who, grants)
        }
    };

    let identity = Identity::new(
        key.id,
        key.kind,
        who,
        key.organization_id,
        state,
        key.expires_at,
        grants,
    );
    match organization_role {
        Some(role) => identity.with_organization_role(role),
        None => identity,
    }
}

/// The organization role that applies to a principal, with its
/// permissions: on a plan without the Organization User role, every member
/// is an Organization Admin. `None` if the principal is not a member.
fn organization_role(principal: &PrincipalRecord) -> Option<(&str, Vec<String>)> {
    let role = principal.organization_role.as_ref()?;
    if role.id == ORGANIZATION_ADMIN || !principal.plan.organization_user_role {
        Some((ORGANIZATION_ADMIN, permissions::organization_admin()))
    } else {
        Some((role.name.as_str(), role.permissions.clone()))
    }
}

fn orphan(key: &KeyRecord, state: KeyState) -> Identity {
    Identity::new(
        key.id,
        key.kind,
        Principal::Workspace,
        key.organization_id,
        state,
        key.expires_at,
        Vec::new(),
    )
}

fn member_grants(principal: &PrincipalRecord, roles: &mut RoleCache) -> Vec<WorkspaceGrant> {
    let Some((org_role, org_permissions)) = organization_role(principal) else {
        return Vec::new();
    };
    let is_org_admin = org_role == ORGANIZATION_ADMIN;

    if is_org_admin {
        let mut perms = permissions::workspace_admin();
        perms.extend(org_permissions);
        let role = roles.get(WORKSPACE_ADMIN, perms);
        return principal
            .workspaces
            .iter()
            .map(|ws| WorkspaceGrant::new(ws.id, ws.retention, role.clone()))
            .collect();
    }

    principal
        .memberships
        .iter()
        .filter_map(|m| {
            let ws = principal
                .workspaces
                .iter()
                .find(|w| w.id == m.workspace_id)?;
            let (name, mut perms) = if principal.plan.rbac {
                (m.role.name.as_str(), m.role.permissions.clone())
            } else {
                (WORKSPACE_ADMIN, permissions::workspace_admin())
            };
            perms.extend(org_permissions.iter().cloned());
            let role = roles.get(name, perms);
            Some(WorkspaceGrant::new(ws.id, ws.retention, role))
        })
        .collect()
}

/// Shares one [`EffectiveRole`] among the workspaces where it is the same.
#[derive(Default)]
struct RoleCache(HashMap<String, Arc<EffectiveRole>>);

impl RoleCache {
    fn get(&mut self, name: &str, permissions: Vec<String>) -> Arc<EffectiveRole> {
        self.0
            .entry(name.to_string())
            .or_insert_with(|| Arc::new(EffectiveRole::new(name, permissions)))
            .clone()
    }
}

/// Checks a key's state, picks the workspace and checks the permission.
/// Returns the index of the chosen grant in `identity.workspaces`.
///
/// `tenant` is the client's `X-Tenant-Id` value, if sent; `now` and
/// `legacy_sunset` are Unix seconds.
pub fn authorize(
    identity: &Identity,
    tenant: Option<&HeaderValue>,
    permission: &str,
    now: i64,
    legacy_sunset: i64,
) -> Result<usize, Rejection> {
    check_key_state(identity, now, legacy_sunset)?;
    let index = select_workspace(identity, tenant)?;
    if !identity.workspaces[index].role.grants(permission) {
        return Err(Rejection::Forbidden {
            permission: permission.into(),
        });
    }
    Ok(index)
}

/// Checks a key's state and that its owner's organization role grants
/// `permission`, without choosing a workspace.
pub fn authorize_organization(
    identity: &Identity,
    permission: &str,
    now: i64,
    legacy_sunset: i64,
) -> Result<(), Rejection> {
    check_key_state(identity, now, legacy_sunset)?;
    let granted = identity
        .organization_role
        .as_ref()
        .is_some_and(|role| role.grants(permission));
    if !granted {
        return Err(Rejection::Forbidden {
            permission: permission.into(),
        });
    }
    Ok(())
}

/// Rejects a key that is revoked, disabled, expired, or legacy after the
/// sunset. `now` and `legacy_sunset` are Unix seconds.
pub fn check_key_state(identity: &Identity, now: i64, legacy_sunset: i64) -> Result<(), Rejection> {
    match identity.state {
        KeyState::Active => {}
        KeyState::Revoked => return Err(Rejection::KeyRevoked),
        KeyState::Disabled => return Err(Rejection::KeyDisabled),
    }
    if identity.expires_at.is_some_and(|at| at <= now) {
        return Err(Rejection::KeyExpired);
    }
    if identity.kind == KeyKind::Legacy && now >= legacy_sunset {
        return Err(Rejection::LegacyKeyRetired);
    }
    Ok(())
}

fn select_workspace(identity: &Identity, tenant: Option<&HeaderValue>) -> Result<usize, Rejection> {
    match tenant {
        Some(value) => {
            let id = value
                .to_str()
                .ok()
                .and_then(|s| Uuid::try_parse(s.trim()).ok())
                .ok_or(Rejection::InvalidWorkspaceId)?;
            identity
                .workspace_index(id)
                .ok_or(Rejection::WorkspaceForbidden)
        }
        None => match identity.workspaces.len() {
            1 => Ok(0),
            0 => Err(Rejection::NoWorkspaceAccess),
            _ => Err(Rejection::WorkspaceRequired),
        },
    }
}

/// The permissions of a role record, or of the built-in role it names.
pub fn builtin_permissions(role_id: &str) -> Option<Vec<String>> {
    BUILTIN_ROLES
        .iter()
        .find(|r| r.id == role_id)
        .map(|r| (r.permissions)())
}

/// Returns a copy of `role` with permissions filled in for built-ins.
pub fn with_builtin_permissions(mut role: RoleRecord) -> RoleRecord {
    if let Some(perms) = builtin_permissions(&role.id) {
        role.permissions = perms;
    }
    role
}

#[cfg(test)]
mod tests;
