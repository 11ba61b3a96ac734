use super::*;
use crate::identity::RetentionTier;
use crate::store::{Membership, Plan};

fn plan(rbac: bool, organization_user_role: bool) -> Plan {
    Plan {
        id: "test".into(),
        name: "Test".into(),
        max_workspaces: None,
        rbac,
        organization_user_role,
        resource_tags: true,
    }
}

fn role(id: &str) -> RoleRecord {
    RoleRecord {
        id: id.into(),
        name: id.into(),
        permissions: builtin_permissions(id).unwrap_or_default(),
    }
}

fn key(kind: KeyKind) -> KeyRecord {
    KeyRecord {
        id: Uuid::new_v4(),
        kind,
        organization_id: Uuid::new_v4(),
        user_id: Some(Uuid::new_v4()),
        service_account_id: Some(Uuid::new_v4()),
        workspace_id: None,
        display_prefix: String::new(),
        description: String::new(),
        created_at: 0,
        expires_at: None,
        revoked_at: None,
        disabled: false,
        last_used_at: None,
    }
}

fn workspaces(n: usize) -> Vec<crate::store::WorkspaceRecord> {
    (0..n)
        .map(|_| crate::store::WorkspaceRecord {
            id: Uuid::new_v4(),
            retention: RetentionTier::Base,
        })
        .collect()
}

fn header(id: Uuid) -> HeaderValue {
    HeaderValue::from_str(&id.to_string()).unwrap()
}

#[test]
fn organization_user_gets_membership_role_on_rbac_plan() {
    let ws = workspaces(2);
    let principal = PrincipalRecord {
        plan: plan(true, true),
        workspaces: ws.clone(),
        organization_role: Some(role(ORGANIZATION_USER)),
        memberships: vec![Membership {
            workspace_id: ws[0].id,
            role: role(WORKSPACE_VIEWER),
        }],
    };
    let identity = resolve_identity(&key(KeyKind::Personal), &principal);
    assert_eq!(identity.workspaces.len(), 1);
    let grant = &identity.workspaces[0];
    assert_eq!(&*grant.role.name, WORKSPACE_VIEWER);
    assert!(grant.role.grants("runs:read"));
    assert!(grant.role.grants("organization:read"));
    assert!(!grant.role.grants("runs:create"));
    assert!(!grant.role.grants("organization:manage"));
}

#[test]
fn every_member_is_admin_without_rbac() {
    let ws = workspaces(2);
    let principal = PrincipalRecord {
        plan: plan(false, true),
        workspaces: ws.clone(),
        organization_role: Some(role(ORGANIZATION_USER)),
        memberships: vec![Membership {
            workspace_id: ws[1].id,
            role: role(WORKSPACE_VIEWER),
        }],
    };
    let identity = resolve_identity(&key(KeyKind::Personal), &principal);
    assert_eq!(identity.workspaces.len(), 1);
    assert_eq!(&*identity.workspaces[0].role.name, WORKSPACE_ADMIN);
    assert!(identity.workspaces[0]
        .role
        .grants("workspaces:manage-members"));
    // Still an Organization User at organization level.
    assert!(!identity.workspaces[0].role.grants("organization:manage"));
}

#[test]
fn single_workspace_plan_makes_every_member_organization_admin() {
    let ws = workspaces(1);
    let principal = PrincipalRecord {
        plan: plan(false, false),
        workspaces: ws.clone(),
        organization_role: Some(role(ORGANIZATION_USER)),
        memberships: vec![],
    };
    let identity = resolve_identity(&key(KeyKind::Personal), &principal);
    assert_eq!(identity.workspaces.len(), 1);
    assert!(identity.workspaces[0].role.grants("organization:manage"));
}

#[test]
fn organization_admin_is_admin_everywhere() {
    let ws = workspaces(3);
    let principal = PrincipalRecord {
        plan: plan(true, true),
        workspaces: ws.clone(),
        organization_role: Some(role(ORGANIZATION_ADMIN)),
        memberships: vec![],
    };
    let identity = resolve_identity(&key(KeyKind::Personal), &principal);
    assert_eq!(identity.workspaces.len(), 3);
    for w in &ws {
        let index = authorize(
            &identity,
            Some(&header(w.id)),
            "workspaces:manage",
            0,
            i64::MAX,
        )
        .unwrap();
        assert_eq!(identity.workspaces[index].workspace_id, w.id);
    }
    assert_eq!(
        authorize(&identity, None, "runs:read", 0, i64::MAX),
        Err(Rejection::WorkspaceRequired)
    );
}

#[test]
fn non_member_reaches_nothing() {
    let principal = PrincipalRecord {
        plan: plan(true, true),
        workspaces: workspaces(1),
        organization_role: None,
        memberships: vec![],
    };
    let identity = resolve_identity(&key(KeyKind::Personal), &principal);
    assert_eq!(
        authorize(&identity, None, "runs:read", 0, i64::MAX),
        Err(Rejection::NoWorkspaceAccess)
    );
}

#[test]
fn key_restricted_to_workspace_reaches_only_it() {
    let ws = workspaces(2);
    let principal = PrincipalRecord {
        plan: plan(true, true),
        workspaces: ws.clone(),
        organization_role: Some(role(ORGANIZATION_ADMIN)),
        memberships: vec![],
    };
    let mut restricted = key(KeyKind::Service);
    restricted.workspace_id = Some(ws[1].id);
    let identity = resolve_identity(&restricted, &principal);
    assert_eq!(identity.workspaces.len(), 1);
    assert_eq!(identity.workspaces[0].workspace_id, ws[1].id);
}

#[test]
fn key_state_is_checked_before_workspace() {
    let principal = PrincipalRecord {
        plan: plan(true, true),
        workspaces: workspaces(1),
        organization_role: Some(role(ORGANIZATION_ADMIN)),
        memberships: vec![],
    };
    let mut record = key(KeyKind::Personal);
    record.expires_at = Some(100);
    let identity = resolve_identity(&record, &principal);
    assert!(authorize(&identity, None, "runs:read", 99, i64::MAX).is_ok());
    assert_eq!(
        authorize(&identity, None, "runs:read", 100, i64::MAX),
        Err(Rejection::KeyExpired)
    );

    record.revoked_at = Some(1);
    let identity = resolve_identity(&record, &principal);
    assert_eq!(
        authorize(&identity, None, "runs:read", 0, i64::MAX),
        Err(Rejection::KeyRevoked)
    );

    let mut disabled = key(KeyKind::Personal);
    disabled.disabled = true;
    let identity = resolve_identity(&disabled, &principal);
    assert_eq!(
        authorize(&identity, None, "runs:read", 0, i64::MAX),
        Err(Rejection::KeyDisabled)
    );
}

#[test]
fn legacy_key_is_editor_in_its_workspace_until_sunset() {
    let ws = workspaces(2);
    let principal = PrincipalRecord {
        plan: plan(true, true),
        workspaces: ws.clone(),
        organization_role: None,
        memberships: vec![],
    };
    let mut legacy = key(KeyKind::Legacy);
    legacy.workspace_id = Some(ws[0].id);
    let identity = resolve_identity(&legacy, &principal);
    assert!(authorize(&identity, None, "datasets:delete", 10, 11).is_ok());
    assert_eq!(
        authorize(&identity, None, "workspaces:manage", 10, 11),
        Err(Rejection::Forbidden {
            permission: "workspaces:manage".into()
        })
    );
    assert_eq!(
        authorize(&identity, Some(&header(ws[1].id)), "runs:read", 10, 11),
        Err(Rejection::WorkspaceForbidden)
    );
    assert_eq!(
        authorize(&identity, None, "runs:read", 11, 11),
        Err(Rejection::LegacyKeyRetired)
    );
}
