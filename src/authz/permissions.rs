//! The permission catalogue and the built-in roles' permission sets.

/// Actions on workspace resources that the built-in roles differ on.
const CRUD: &[&str] = &["create", "read", "update", "delete"];

/// Workspace resources and the actions they support.
const WORKSPACE_RESOURCES: &[(&str, &[&str])] = &[
    ("alerts", CRUD),
    ("annotation-queues", CRUD),
    ("charts", CRUD),
    ("datasets", &["create", "read", "update", "delete", "share"]),
    ("deployments", CRUD),
    ("examples", CRUD),
    ("experiments", CRUD),
    ("feedback", CRUD),
    ("feedback-configs", CRUD),
    ("model-configs", CRUD),
    ("projects", CRUD),
    ("prompts", &["create", "read", "update", "delete", "share"]),
    ("rules", CRUD),
    ("runs", &["create", "read", "delete", "share"]),
    ("secrets", &["read", "update"]),
    ("shared-urls", &["read", "delete"]),
    ("tags", &["read", "assign"]),
];

/// Workspace management permissions: granted to Admin only.
pub const WORKSPACE_MANAGEMENT: &[&str] = &[
    "workspaces:manage",
    "workspaces:manage-members",
    "workspaces:manage-roles",
    "workspaces:manage-service-keys",
];

/// Reads workspace settings, members and tags.
pub const WORKSPACE_READ: &str = "workspaces:read";

/// Organization permissions held by every organization member.
pub const ORGANIZATION_MEMBER: &[&str] = &["organization:read", "organization:pats:create"];

/// Organization permissions held by Organization Admins only.
pub const ORGANIZATION_ADMIN_ONLY: &[&str] = &[
    "organization:manage",
    "organization:manage-billing",
    "organization:manage-members",
    "organization:manage-roles",
    "organization:manage-settings",
    "organization:manage-workspaces",
];

/// Every workspace-scoped permission: what custom roles may contain.
pub fn workspace_permissions() -> Vec<String> {
    let mut all: Vec<String> = WORKSPACE_RESOURCES
        .iter()
        .flat_map(|(resource, actions)| actions.iter().map(move |a| format!("{resource}:{a}")))
        .collect();
    all.push(WORKSPACE_READ.to_string());
    all.extend(WORKSPACE_MANAGEMENT.iter().map(|p| p.to_string()));
    all.sort();
    all
}

/// Every organization-scoped permission.
pub fn organization_permissions() -> Vec<String> {
    let mut all: Vec<String> = ORGANIZATION_MEMBER
        .iter()
        .chain(ORGANIZATION_ADMIN_ONLY)
        .map(|p| p.to_string())
        .collect();
    all.sort();
    all
}

/// Returns true if `permission` is in the catalogue.
pub fn is_known(permission: &str) -> bool {
    workspace_permissions().iter().any(|p| p == permission)
        || organization_permissions().iter().any(|p| p == permission)
}

/// Admin: every workspace permission.
pub fn workspace_admin() -> Vec<String> {
    workspace_permissions()
}

/// Editor: everything but workspace management.
pub fn workspace_editor() -> Vec<String> {
    workspace_permissions()
        .into_iter()
        .filter(|p| !WORKSPACE_MANAGEMENT.contains(&p.as_str()))
        .collect()
}

/// Viewer: reads only.
pub fn workspace_viewer() -> Vec<String> {
    workspace_permissions()
        .into_iter()
        .filter(|p| p.ends_with(":read"))
        .collect()
}

/// Organization Admin: every organization permission.
pub fn organization_admin() -> Vec<String> {
    organization_permissions()
}

/// Organization User: reads the organization and creates its own tokens.
pub fn organization_user() -> Vec<String> {
    let mut all: Vec<String> = ORGANIZATION_MEMBER.iter().map(|p| p.to_string()).collect();
    all.sort();
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_has_no_duplicates() {
        let mut all = workspace_permissions();
        all.extend(organization_permissions());
        let count = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), count);
    }

    #[test]
    fn editor_lacks_only_workspace_management() {
        let admin = workspace_admin();
        let editor = workspace_editor();
        let missing: Vec<&String> = admin.iter().filter(|p| !editor.contains(p)).collect();
        assert_eq!(missing, WORKSPACE_MANAGEMENT.iter().collect::<Vec<_>>());
    }

    #[test]
    fn viewer_only_reads() {
        let viewer = workspace_viewer();
        assert!(viewer.contains(&"runs:read".to_string()));
        assert!(viewer.contains(&"workspaces:read".to_string()));
        assert!(viewer.iter().all(|p| p.ends_with(":read")));
    }

    #[test]
    fn organization_user_cannot_manage() {
        let user = organization_user();
        assert!(user.contains(&"organization:read".to_string()));
        assert!(!user.iter().any(|p| p.starts_with("organization:manage")));
    }
}
