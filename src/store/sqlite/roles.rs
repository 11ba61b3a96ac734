//! Roles (built-in and custom workspace roles) and service accounts.

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;
use uuid::Uuid;

use super::audit::{record, snapshot, unique_on, Actor, Change, DirectoryError, Page, PageRequest};
use super::directory::{check_name, load_organization, load_workspace, record_update, PlanInfo};
use super::{parse_uuid, SqliteStore};
use crate::authz::permissions;
use crate::authz::{ORGANIZATION_ADMIN, ORGANIZATION_USER};
use crate::store::unix_now;

/// A role with its permissions.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Role {
    pub id: String,
    pub name: String,
    pub display_name: String,
    pub description: String,
    /// `organization` or `workspace`.
    pub scope: String,
    /// Built-in roles cannot be changed.
    pub builtin: bool,
    pub permissions: Vec<String>,
}

/// A custom role to create, or a change to one; absent fields keep their
/// value.
#[derive(Debug, Clone, Default)]
pub struct RoleChange {
    pub name: Option<String>,
    pub description: Option<String>,
    pub permissions: Option<Vec<String>>,
}

/// A service account: a principal for programs, holding an organization
/// role and workspace roles like a user.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ServiceAccount {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub name: String,
    /// The organization role.
    pub role_id: String,
    pub workspaces: Vec<WorkspaceRole>,
    pub created_at: i64,
}

/// A workspace role held in one workspace.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WorkspaceRole {
    pub workspace_id: Uuid,
    pub role_id: String,
}

impl SqliteStore {
    /// Lists the built-in roles, then the organization's custom roles.
    pub fn list_roles(&self, org: Uuid, page: PageRequest) -> Result<Page<Role>, DirectoryError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT id FROM roles WHERE organization_id IS NULL OR organization_id = ?1
             ORDER BY is_builtin DESC, name LIMIT ?2 OFFSET ?3",
        )?;
        let ids = stmt
            .query_map(
                params![org.to_string(), page.fetch(), page.sql_offset()],
                |r| r.get::<_, String>(0),
            )?
            .collect::<Result<Vec<_>, _>>()?;
        let roles = ids
            .iter()
            .map(|id| load_role(&conn, org, id))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(page.finish(roles))
    }

    /// Creates a custom workspace role. Only plans with RBAC have them, and
    /// they hold workspace permissions only.
    pub fn create_role(
        &self,
        actor: &Actor,
        org: Uuid,
        change: &RoleChange,
    ) -> Result<Role, DirectoryError> {
        let name = check_name("name", change.name.as_deref().unwrap_or_default())?;
        let perms = check_workspace_permissions(change.permissions.as_deref().unwrap_or_default())?;
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        require_rbac(&load_organization(&tx, org)?.plan)?;
        let id = Uuid::new_v4().to_string();
        tx.execute(
            "INSERT INTO roles (id, organization_id, name, display_name, description, scope,
                                is_builtin, created_at)
             VALUES (?1, ?2, ?3, ?3, ?4, 'workspace', 0, ?5)",
            params![
                id,
                org.to_string(),
                name,
                change.description.as_deref().unwrap_or(""),
                unix_now()
            ],
        )
        .map_err(unique_on("name", format!("a role named {name:?} exists")))?;
        write_permissions(&tx, &id, &perms)?;
        let role = load_role(&tx, org, &id)?;
        record(
            &tx,
            actor,
            Change {
                organization_id: Some(org),
                action: "role.create",
                target_type: "role",
                target_id: id,
                before: None,
                after: snapshot(&role),
            },
        )?;
        tx.commit()?;
        Ok(role)
    }

    /// Changes a custom role's name, description or permissions.
    pub fn update_role(
        &self,
        actor: &Actor,
        org: Uuid,
        id: &str,
        change: &RoleChange,
    ) -> Result<Role, DirectoryError> {
        let name = change
            .name
            .as_deref()
            .map(|n| check_name("name", n))
            .transpose()?;
        let perms = change
            .permissions
            .as_deref()
            .map(check_workspace_permissions)
            .transpose()?;
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        require_rbac(&load_organization(&tx, org)?.plan)?;
        let before = load_custom_role(&tx, org, id)?;
        tx.execute(
            "UPDATE roles SET name = COALESCE(?2, name), display_name = COALESCE(?2, display_name),
                              description = COALESCE(?3, description)
             WHERE id = ?1",
            params![id, name, change.description],
        )
        .map_err(unique_on(
            "name",
            format!("a role named {:?} exists", name.unwrap_or_default()),
        ))?;
        if let Some(perms) = perms {
            tx.execute(
                "DELETE FROM role_permissions WHERE role_id = ?1",
                params![id],
            )?;
            write_permissions(&tx, id, &perms)?;
        }
        let after = load_role(&tx, org, id)?;
        record_update(&tx, actor, org, "role.update", "role", id, &before, &after)?;
        tx.commit()?;
        Ok(after)
    }

    /// Deletes a custom role that no member or service account holds.
    pub fn delete_role(&self, actor: &Actor, org: Uuid, id: &str) -> Result<(), DirectoryError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        require_rbac(&load_organization(&tx, org)?.plan)?;
        let before = load_custom_role(&tx, org, id)?;
        let holders: i64 = tx.query_row(
            "SELECT (SELECT COUNT(*) FROM workspace_members WHERE role_id = ?1)
                  + (SELECT COUNT(*) FROM service_account_workspaces WHERE role_id = ?1)
                  + (SELECT COUNT(*) FROM invitations WHERE workspace_role_id = ?1
                        AND accepted_at IS NULL AND revoked_at IS NULL)",
            params![id],
            |r| r.get(0),
        )?;
        if holders > 0 {
            return Err(DirectoryError::conflict(
                "role_id",
                format!("the role is held {holders} times; assign another role first"),
            ));
        }
        tx.execute("DELETE FROM roles WHERE id = ?1", params![id])?;
        record(
            &tx,
            actor,
            Change {
                organization_id: Some(org),
                action: "role.delete",
                target_type: "role",
                target_id: id.to_string(),
                before: snapshot(&before),
                after: None,
            },
        )?;
        tx.commit()?;
        Ok(())
    }

    pub fn list_service_accounts(
        &self,
        org: Uuid,
        page: PageRequest,
    ) -> Result<Page<ServiceAccount>, DirectoryError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT id FROM service_accounts WHERE organization_id = ?1
             ORDER BY name LIMIT ?2 OFFSET ?3",
        )?;
        let ids = stmt
            .query_map(
                params![org.to_string(), page.fetch(), page.sql_offset()],
                |r| r.get::<_, String>(0),
            )?
            .collect::<Result<Vec<_>, _>>()?;
        let accounts = ids
            .iter()
            .map(|id| load_service_account(&conn, org, parse_uuid("service_accounts", id)?))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(page.finish(accounts))
    }

    pub fn service_account(&self, org: Uuid, id: Uuid) -> Result<ServiceAccount, DirectoryError> {
        load_service_account(&self.lock(), org, id)
    }

    /// Creates a service account. Without a role it is an Organization
    /// User where the plan has that role, else an Organization Admin.
    pub fn add_service_account(
        &self,
        actor: &Actor,
        org: Uuid,
        name: &str,
        role: Option<&str>,
    ) -> Result<ServiceAccount, DirectoryError> {
        let name = check_name("name", name)?;
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let plan = load_organization(&tx, org)?.plan;
        let role = match role {
            Some(role) => role,
            None if plan.organization_user_role => ORGANIZATION_USER,
            None => ORGANIZATION_ADMIN,
        };
        check_organization_role(&plan, role)?;
        let id = Uuid::new_v4();
        tx.execute(
            "INSERT INTO service_accounts (id, organization_id, name, role_id, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![id.to_string(), org.to_string(), name, role, unix_now()],
        )
        .map_err(unique_on(
            "name",
            format!("a service account named {name:?} exists"),
        ))?;
        let account = load_service_account(&tx, org, id)?;
        record(
            &tx,
            actor,
            Change {
                organization_id: Some(org),
                action: "service_account.create",
                target_type: "service_account",
                target_id: id.to_string(),
                before: None,
                after: snapshot(&account),
            },
        )?;
        tx.commit()?;
        Ok(account)
    }

    /// Gives a service account a workspace role, or removes it (`None`).
    pub fn set_service_account_workspace(
        &self,
        actor: &Actor,
        org: Uuid,
        ws: Uuid,
        account: Uuid,
        role: Option<&str>,
    ) -> Result<ServiceAccount, DirectoryError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let plan = load_organization(&tx, org)?.plan;
        load_workspace(&tx, org, ws)?;
        let before = load_service_account(&tx, org, account)?;
        match role {
            Some(role) => {
                check_workspace_role(&tx, org, &plan, "role", role)?;
                tx.execute(
                    "INSERT INTO service_account_workspaces (service_account_id, workspace_id, role_id)
                     VALUES (?1, ?2, ?3)
                     ON CONFLICT (service_account_id, workspace_id) DO UPDATE SET role_id = excluded.role_id",
                    params![account.to_string(), ws.to_string(), role],
                )?;
            }
            None => {
                let removed = tx.execute(
                    "DELETE FROM service_account_workspaces
                     WHERE service_account_id = ?1 AND workspace_id = ?2",
                    params![account.to_string(), ws.to_string()],
                )?;
                if removed == 0 {
                    return Err(DirectoryError::not_found(
                        "workspace service account",
                        account,
                    ));
                }
            }
        }
        let after = load_service_account(&tx, org, account)?;
        record_update(
            &tx,
            actor,
            org,
            "service_account.set_workspace",
            "service_account",
            account,
            &before,
            &after,
        )?;
        tx.commit()?;
        Ok(after)
    }

    /// Deletes a service account with its keys.
    ///
    /// The keys are deleted rather than marked revoked, because a service
    /// key cannot exist without its account. The audit record lists them.
    pub fn delete_service_account(
        &self,
        actor: &Actor,
        org: Uuid,
        id: Uuid,
    ) -> Result<(), DirectoryError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let before = load_service_account(&tx, org, id)?;
        let mut stmt = tx.prepare("SELECT id FROM api_keys WHERE service_account_id = ?1")?;
        let keys = stmt
            .query_map(params![id.to_string()], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        drop(stmt);
        tx.execute(
            "UPDATE api_keys SET replaced_by = NULL WHERE replaced_by IN
                 (SELECT id FROM api_keys WHERE service_account_id = ?1)",
            params![id.to_string()],
        )?;
        tx.execute(
            "DELETE FROM api_keys WHERE service_account_id = ?1",
            params![id.to_string()],
        )?;
        tx.execute(
            "DELETE FROM service_accounts WHERE id = ?1",
            params![id.to_string()],
        )?;
        let mut before = snapshot(&before);
        if let Some(serde_json::Value::Object(map)) = before.as_mut() {
            map.insert("deleted_keys".into(), serde_json::json!(keys));
        }
        record(
            &tx,
            actor,
            Change {
                organization_id: Some(org),
                action: "service_account.delete",
                target_type: "service_account",
                target_id: id.to_string(),
                before,
                after: None,
            },
        )?;
        tx.commit()?;
        Ok(())
    }
}

/// Checks that `role` is an organization role the plan offers.
pub(crate) fn check_organization_role(plan: &PlanInfo, role: &str) -> Result<(), DirectoryError> {
    match role {
        ORGANIZATION_ADMIN => Ok(()),
        ORGANIZATION_USER if plan.organization_user_role => Ok(()),
        ORGANIZATION_USER => Err(DirectoryError::PlanFeature(format!(
            "the {} plan has no Organization User role: in a single-workspace organization \
             every member is an Organization Admin",
            plan.name
        ))),
        other => Err(DirectoryError::invalid(
            "role",
            format!("unknown organization role {other:?}: expected {ORGANIZATION_ADMIN} or {ORGANIZATION_USER}"),
        )),
    }
}

/// Checks that `role` is a built-in workspace role or a custom role of
/// `org`, and that a custom role is allowed by the plan.
pub(crate) fn check_workspace_role(
    conn: &Connection,
    org: Uuid,
    plan: &PlanInfo,
    field: &'static str,
    role: &str,
) -> Result<(), DirectoryError> {
    let found: Option<(bool, String)> = conn
        .query_row(
            "SELECT is_builtin, scope FROM roles
             WHERE id = ?1 AND (organization_id IS NULL OR organization_id = ?2)",
            params![role, org.to_string()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    match found {
        Some((_, scope)) if scope != "workspace" => Err(DirectoryError::invalid(
            field,
            format!("{role} is an organization role, not a workspace role"),
        )),
        Some((false, _)) => require_rbac(plan),
        Some((true, _)) => Ok(()),
        None => Err(DirectoryError::invalid(
            field,
            format!("unknown workspace role {role:?}"),
        )),
    }
}

fn require_rbac(plan: &PlanInfo) -> Result<(), DirectoryError> {
    if plan.rbac {
        Ok(())
    } else {
        Err(DirectoryError::PlanFeature(format!(
            "the {} plan has no custom roles (RBAC): every workspace member acts as Admin",
            plan.name
        )))
    }
}

/// Checks that every permission is a workspace permission of the
/// catalogue, and returns them sorted without duplicates.
fn check_workspace_permissions(given: &[String]) -> Result<Vec<String>, DirectoryError> {
    let allowed = permissions::workspace_permissions();
    for permission in given {
        if !allowed.contains(permission) {
            if permissions::is_known(permission) {
                return Err(DirectoryError::invalid(
                    "permissions",
                    format!("{permission} is an organization permission; custom roles hold workspace permissions only"),
                ));
            }
            return Err(DirectoryError::UnknownPermission {
                field: "permissions",
                permission: permission.clone(),
            });
        }
    }
    let mut perms = given.to_vec();
    perms.sort();
    perms.dedup();
    Ok(perms)
}

fn write_permissions(
    conn: &Connection,
    role: &str,
    perms: &[String],
) -> Result<(), DirectoryError> {
    let mut insert =
        conn.prepare_cached("INSERT INTO role_permissions (role_id, permission) VALUES (?1, ?2)")?;
    for permission in perms {
        insert.execute(params![role, permission])?;
    }
    Ok(())
}

fn load_role(conn: &Connection, org: Uuid, id: &str) -> Result<Role, DirectoryError> {
    let row = conn
        .query_row(
            "SELECT name, display_name, description, scope, is_builtin FROM roles
             WHERE id = ?1 AND (organization_id IS NULL OR organization_id = ?2)",
            params![id, org.to_string()],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, bool>(4)?,
                ))
            },
        )
        .optional()?
        .ok_or_else(|| DirectoryError::not_found("role", id))?;
    let record = super::load_role(conn, id)?;
    let (name, display_name, description, scope, builtin) = row;
    Ok(Role {
        id: id.to_string(),
        name,
        display_name,
        description,
        scope,
        builtin,
        permissions: record.permissions,
    })
}

/// Loads a custom role of `org`; built-in roles are rejected because they
/// cannot change.
fn load_custom_role(conn: &Connection, org: Uuid, id: &str) -> Result<Role, DirectoryError> {
    let role = load_role(conn, org, id)?;
    if role.builtin {
        return Err(DirectoryError::Forbidden {
            code: "builtin_role",
            detail: format!("{id} is a built-in role and cannot be changed or deleted"),
        });
    }
    Ok(role)
}

fn load_service_account(
    conn: &Connection,
    org: Uuid,
    id: Uuid,
) -> Result<ServiceAccount, DirectoryError> {
    let (name, role_id, created_at) = conn
        .query_row(
            "SELECT name, role_id, created_at FROM service_accounts
             WHERE id = ?1 AND organization_id = ?2",
            params![id.to_string(), org.to_string()],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            },
        )
        .optional()?
        .ok_or_else(|| DirectoryError::not_found("service account", id))?;
    let mut stmt = conn.prepare_cached(
        "SELECT workspace_id, role_id FROM service_account_workspaces
         WHERE service_account_id = ?1 ORDER BY workspace_id",
    )?;
    let rows = stmt
        .query_map(params![id.to_string()], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let workspaces = rows
        .into_iter()
        .map(|(ws, role_id)| {
            Ok(WorkspaceRole {
                workspace_id: parse_uuid("service_account_workspaces", &ws)?,
                role_id,
            })
        })
        .collect::<Result<Vec<_>, DirectoryError>>()?;
    Ok(ServiceAccount {
        id,
        organization_id: org,
        name,
        role_id,
        workspaces,
        created_at,
    })
}
