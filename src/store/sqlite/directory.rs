//! Organizations, plans, users and workspaces, with the plan rules that
//! bound them: the maximum of workspaces, and personal organizations
//! (Developer plan, one workspace, no invitations).

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

use super::admin::{insert_workspace, upsert_organization_member, upsert_workspace_member};
use super::audit::{record, snapshot, unique_on, Actor, Change, DirectoryError, Page, PageRequest};
use super::keys::{insert_key_row, Key};
use super::{parse_uuid, NewKey, SqliteStore};
use crate::authz::{ORGANIZATION_ADMIN, WORKSPACE_ADMIN};
use crate::credential::{KeyKind, SecretKey};
use crate::identity::RetentionTier;
use crate::store::{unix_now, Plan, StoreError};

/// The plan of every personal organization.
pub const PERSONAL_PLAN: &str = "developer";
/// Name of a personal organization's only workspace.
pub const PERSONAL_WORKSPACE: &str = "Personal";
/// Longest accepted name of an organization, workspace, role or account.
pub const MAX_NAME_CHARS: usize = 128;
/// Days a trace is kept on each retention tier.
const BASE_RETENTION_DAYS: u32 = 14;
const EXTENDED_RETENTION_DAYS: u32 = 400;

/// Features and limits a plan includes.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PlanInfo {
    pub id: String,
    pub name: String,
    /// `null`: no maximum.
    pub max_workspaces: Option<u32>,
    /// Custom workspace roles.
    pub rbac: bool,
    /// The Organization User role.
    pub organization_user_role: bool,
    pub resource_tags: bool,
}

impl From<Plan> for PlanInfo {
    fn from(plan: Plan) -> Self {
        Self {
            id: plan.id,
            name: plan.name,
            max_workspaces: plan.max_workspaces,
            rbac: plan.rbac,
            organization_user_role: plan.organization_user_role,
            resource_tags: plan.resource_tags,
        }
    }
}

/// An organization and its plan.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Organization {
    pub id: Uuid,
    pub name: String,
    /// A personal organization: Developer plan, one workspace, no
    /// invitations.
    pub is_personal: bool,
    pub plan: PlanInfo,
    /// Free-form settings of the organization.
    #[schema(value_type = Object)]
    pub settings: Value,
    pub workspace_count: u32,
    pub created_at: i64,
}

/// A user.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
    pub created_at: i64,
}

/// A workspace.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Workspace {
    pub id: Uuid,
    pub organization_id: Uuid,
    pub name: String,
    /// `base` (14 days) or `extended` (400 days).
    pub retention_tier: String,
    pub created_at: i64,
}

/// Monthly limits of a workspace; `null` means no limit.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UsageLimits {
    /// All traces per calendar month (UTC).
    pub all_traces: Option<i64>,
    /// Traces with extended retention per calendar month (UTC).
    pub extended_traces: Option<i64>,
}

/// A workspace's retention tier and usage limits.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct WorkspaceSettings {
    pub workspace_id: Uuid,
    /// `base` or `extended`.
    pub retention_tier: String,
    pub retention_days: u32,
    pub usage_limits: UsageLimits,
}

/// A change to a workspace's settings; absent fields keep their value.
#[derive(Debug, Clone, Default)]
pub struct SettingsChange {
    pub retention_tier: Option<RetentionTier>,
    /// `Some(None)` removes the limit.
    pub all_traces: Option<Option<i64>>,
    pub extended_traces: Option<Option<i64>>,
}

/// A new shared organization, with its owner's first personal access
/// token.
#[derive(Debug)]
pub struct SharedOrganization {
    pub organization: Organization,
    pub workspace: Workspace,
    pub key: Key,
    pub secret: SecretKey,
}

/// A user with a personal organization.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NewUser {
    pub user: User,
    pub organization: Organization,
    pub workspace: Workspace,
}

impl SqliteStore {
    /// Lists the plans.
    pub fn plans(&self) -> Result<Vec<PlanInfo>, DirectoryError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT id, name, max_workspaces, rbac, organization_user_role, resource_tags
             FROM plans ORDER BY COALESCE(max_workspaces, 1 << 30), id",
        )?;
        let plans = stmt
            .query_map([], plan_from_row)?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(plans.into_iter().map(PlanInfo::from).collect())
    }

    pub fn organization(&self, org: Uuid) -> Result<Organization, DirectoryError> {
        load_organization(&self.lock(), org)
    }

    /// Lists the organizations a user belongs to.
    pub fn organizations_of(&self, user: Uuid) -> Result<Vec<Organization>, DirectoryError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT organization_id FROM organization_members WHERE user_id = ?1
             ORDER BY created_at, organization_id",
        )?;
        let ids = stmt
            .query_map(params![user.to_string()], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        ids.iter()
            .map(|id| load_organization(&conn, parse_uuid("organizations", id)?))
            .collect()
    }

    /// Creates a user with a personal organization: Developer plan, one
    /// workspace, in which the user is Organization Admin and Admin.
    pub fn create_user_with_personal_org(
        &self,
        actor: &Actor,
        email: &str,
        display_name: &str,
    ) -> Result<NewUser, DirectoryError> {
        let email = check_email(email)?;
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let user = Uuid::new_v4();
        let now = unix_now();
        tx.execute(
            "INSERT INTO users (id, email, display_name, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![user.to_string(), email, display_name, now],
        )
        .map_err(unique_on(
            "email",
            format!("a user with email {email} exists"),
        ))?;
        let org = Uuid::new_v4();
        tx.execute(
            "INSERT INTO organizations (id, name, is_personal, plan_id, created_at)
             VALUES (?1, ?2, 1, ?3, ?4)",
            params![
                org.to_string(),
                format!("{email} (personal)"),
                PERSONAL_PLAN,
                now
            ],
        )?;
        let ws = insert_workspace(&tx, org, PERSONAL_WORKSPACE)?;
        upsert_organization_member(&tx, org, user, ORGANIZATION_ADMIN)?;
        upsert_workspace_member(&tx, ws, user, WORKSPACE_ADMIN)?;
        let created = NewUser {
            user: load_user(&tx, user)?,
            organization: load_organization(&tx, org)?,
            workspace: load_workspace(&tx, org, ws)?,
        };
        record(
            &tx,
            actor,
            Change {
                organization_id: Some(org),
                action: "user.create",
                target_type: "user",
                target_id: user.to_string(),
                before: None,
                after: snapshot(&created),
            },
        )?;
        tx.commit()?;
        Ok(created)
    }

    /// Finds a user by id.
    pub fn user(&self, id: Uuid) -> Result<User, DirectoryError> {
        load_user(&self.lock(), id)
    }

    /// Creates a shared organization on `plan` with one workspace, in which
    /// `owner` is Organization Admin, and the owner's first personal access
    /// token in it. The token's secret is not stored.
    pub fn create_shared_organization(
        &self,
        actor: &Actor,
        name: &str,
        plan: &str,
        owner: Uuid,
    ) -> Result<SharedOrganization, DirectoryError> {
        let name = check_name("name", name)?;
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        load_user(&tx, owner)?;
        load_plan(&tx, plan)?;
        let org = Uuid::new_v4();
        tx.execute(
            "INSERT INTO organizations (id, name, is_personal, plan_id, created_at)
             VALUES (?1, ?2, 0, ?3, ?4)",
            params![org.to_string(), name, plan, unix_now()],
        )?;
        let ws = insert_workspace(&tx, org, "Default")?;
        upsert_organization_member(&tx, org, owner, ORGANIZATION_ADMIN)?;
        upsert_workspace_member(&tx, ws, owner, WORKSPACE_ADMIN)?;
        let organization = load_organization(&tx, org)?;
        let workspace = load_workspace(&tx, org, ws)?;
        record(
            &tx,
            actor,
            Change {
                organization_id: Some(org),
                action: "organization.create",
                target_type: "organization",
                target_id: org.to_string(),
                before: None,
                after: snapshot(&organization),
            },
        )?;
        let secret = SecretKey::generate(KeyKind::Personal);
        let new_key = NewKey {
            kind: KeyKind::Personal,
            organization_id: org,
            user_id: Some(owner),
            service_account_id: None,
            workspace_id: None,
            description: "first key of the organization".into(),
            expires_at: None,
        };
        let key = insert_key_row(
            &tx,
            &new_key,
            &secret.hash().0,
            &secret.display_prefix(),
            actor,
        )?;
        record(
            &tx,
            actor,
            Change {
                organization_id: Some(org),
                action: "key.create",
                target_type: "key",
                target_id: key.id.to_string(),
                before: None,
                after: snapshot(&key),
            },
        )?;
        tx.commit()?;
        Ok(SharedOrganization {
            organization,
            workspace,
            key,
            secret,
        })
    }

    /// Renames an organization or replaces its settings object.
    pub fn update_organization(
        &self,
        actor: &Actor,
        org: Uuid,
        name: Option<&str>,
        settings: Option<&Value>,
    ) -> Result<Organization, DirectoryError> {
        if let Some(settings) = settings {
            if !settings.is_object() {
                return Err(DirectoryError::invalid("settings", "must be a JSON object"));
            }
        }
        let name = name.map(|n| check_name("name", n)).transpose()?;
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let before = load_organization(&tx, org)?;
        tx.execute(
            "UPDATE organizations SET name = COALESCE(?2, name), settings = COALESCE(?3, settings)
             WHERE id = ?1",
            params![org.to_string(), name, settings.map(Value::to_string)],
        )?;
        let after = load_organization(&tx, org)?;
        record_update(
            &tx,
            actor,
            org,
            "organization.update",
            "organization",
            org,
            &before,
            &after,
        )?;
        tx.commit()?;
        Ok(after)
    }

    /// Moves an organization to another plan. A personal organization stays
    /// on the Developer plan, and the new plan must allow the workspaces
    /// the organization has.
    pub fn set_plan(
        &self,
        actor: &Actor,
        org: Uuid,
        plan: &str,
    ) -> Result<Organization, DirectoryError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let before = load_organization(&tx, org)?;
        let new_plan = load_plan(&tx, plan)?;
        if before.is_personal && plan != PERSONAL_PLAN {
            return Err(DirectoryError::Forbidden {
                code: "personal_organization",
                detail: "a personal organization stays on the Developer plan; \
                         create a shared organization for other plans"
                    .into(),
            });
        }
        if let Some(max) = new_plan.max_workspaces {
            if before.workspace_count > max {
                return Err(DirectoryError::PlanLimit(format!(
                    "the {} plan allows {max} workspaces and the organization has {}; \
                     delete workspaces first",
                    new_plan.name, before.workspace_count
                )));
            }
        }
        tx.execute(
            "UPDATE organizations SET plan_id = ?2 WHERE id = ?1",
            params![org.to_string(), plan],
        )?;
        let after = load_organization(&tx, org)?;
        record_update(
            &tx,
            actor,
            org,
            "organization.set_plan",
            "organization",
            org,
            &before,
            &after,
        )?;
        tx.commit()?;
        Ok(after)
    }

    /// Lists an organization's workspaces by name; `only`, if given, keeps
    /// just those ids.
    pub fn list_workspaces(
        &self,
        org: Uuid,
        only: Option<&[Uuid]>,
        page: PageRequest,
    ) -> Result<Page<Workspace>, DirectoryError> {
        let conn = self.lock();
        let mut stmt = conn.prepare(
            "SELECT id, organization_id, name, retention_tier, created_at FROM workspaces
             WHERE organization_id = ?1 ORDER BY name, id",
        )?;
        let all = stmt
            .query_map(params![org.to_string()], workspace_from_row)?
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .collect::<Result<Vec<_>, StoreError>>()?;
        let rows: Vec<Workspace> = all
            .into_iter()
            .filter(|w| only.is_none_or(|ids| ids.contains(&w.id)))
            .skip(usize::try_from(page.offset).unwrap_or(usize::MAX))
            .take(page.fetch() as usize)
            .collect();
        Ok(page.finish(rows))
    }

    pub fn workspace(&self, org: Uuid, ws: Uuid) -> Result<Workspace, DirectoryError> {
        load_workspace(&self.lock(), org, ws)
    }

    /// Creates a workspace with the default tag keys, within the plan's
    /// maximum.
    pub fn add_workspace(
        &self,
        actor: &Actor,
        org: Uuid,
        name: &str,
    ) -> Result<Workspace, DirectoryError> {
        let name = check_name("name", name)?;
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let organization = load_organization(&tx, org)?;
        if let Some(max) = organization.plan.max_workspaces {
            if organization.workspace_count >= max {
                let what = if organization.is_personal {
                    "a personal organization has at most one workspace".to_string()
                } else {
                    format!(
                        "the {} plan allows at most {max} workspaces",
                        organization.plan.name
                    )
                };
                return Err(DirectoryError::PlanLimit(format!(
                    "{what}; upgrade the plan or delete a workspace"
                )));
            }
        }
        ensure_workspace_name_free(&tx, org, name, None)?;
        let ws = insert_workspace(&tx, org, name)?;
        let workspace = load_workspace(&tx, org, ws)?;
        record(
            &tx,
            actor,
            Change {
                organization_id: Some(org),
                action: "workspace.create",
                target_type: "workspace",
                target_id: ws.to_string(),
                before: None,
                after: snapshot(&workspace),
            },
        )?;
        tx.commit()?;
        Ok(workspace)
    }

    pub fn rename_workspace(
        &self,
        actor: &Actor,
        org: Uuid,
        ws: Uuid,
        name: &str,
    ) -> Result<Workspace, DirectoryError> {
        let name = check_name("name", name)?;
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let before = load_workspace(&tx, org, ws)?;
        ensure_workspace_name_free(&tx, org, name, Some(ws))?;
        tx.execute(
            "UPDATE workspaces SET name = ?2 WHERE id = ?1",
            params![ws.to_string(), name],
        )?;
        let after = load_workspace(&tx, org, ws)?;
        record_update(
            &tx,
            actor,
            org,
            "workspace.rename",
            "workspace",
            ws,
            &before,
            &after,
        )?;
        tx.commit()?;
        Ok(after)
    }

    /// Deletes a workspace and revokes the keys bound to it.
    ///
    /// Personal access tokens and service keys restricted to the workspace
    /// are revoked first, so that losing their restriction cannot widen
    /// them. Legacy keys are deleted with the workspace, because a legacy
    /// key cannot exist without one.
    pub fn delete_workspace(
        &self,
        actor: &Actor,
        org: Uuid,
        ws: Uuid,
    ) -> Result<(), DirectoryError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let before = load_workspace(&tx, org, ws)?;
        let now = unix_now();
        let revoked = tx.execute(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?2)
             WHERE workspace_id = ?1 AND kind <> 'legacy'",
            params![ws.to_string(), now],
        )?;
        let deleted = tx.execute(
            "DELETE FROM api_keys WHERE workspace_id = ?1 AND kind = 'legacy'",
            params![ws.to_string()],
        )?;
        tx.execute(
            "DELETE FROM workspaces WHERE id = ?1",
            params![ws.to_string()],
        )?;
        let mut before = snapshot(&before);
        if let Some(Value::Object(map)) = before.as_mut() {
            map.insert("keys_revoked".into(), json!(revoked));
            map.insert("legacy_keys_deleted".into(), json!(deleted));
        }
        record(
            &tx,
            actor,
            Change {
                organization_id: Some(org),
                action: "workspace.delete",
                target_type: "workspace",
                target_id: ws.to_string(),
                before,
                after: None,
            },
        )?;
        tx.commit()?;
        Ok(())
    }

    pub fn workspace_settings(
        &self,
        org: Uuid,
        ws: Uuid,
    ) -> Result<WorkspaceSettings, DirectoryError> {
        load_settings(&self.lock(), org, ws)
    }

    /// Changes a workspace's retention tier and usage limits.
    pub fn update_workspace_settings(
        &self,
        actor: &Actor,
        org: Uuid,
        ws: Uuid,
        change: &SettingsChange,
    ) -> Result<WorkspaceSettings, DirectoryError> {
        for (field, value) in [
            ("usage_limits.all_traces", change.all_traces),
            ("usage_limits.extended_traces", change.extended_traces),
        ] {
            if value.flatten().is_some_and(|v| v < 0) {
                return Err(DirectoryError::invalid(field, "must be zero or more"));
            }
        }
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let before = load_settings(&tx, org, ws)?;
        if let Some(tier) = change.retention_tier {
            tx.execute(
                "UPDATE workspaces SET retention_tier = ?2 WHERE id = ?1",
                params![ws.to_string(), tier.as_str()],
            )?;
        }
        for (limit_type, value) in [
            ("all_traces", change.all_traces),
            ("extended_traces", change.extended_traces),
        ] {
            match value {
                None => {}
                Some(None) => {
                    tx.execute(
                        "DELETE FROM usage_limits WHERE workspace_id = ?1 AND limit_type = ?2",
                        params![ws.to_string(), limit_type],
                    )?;
                }
                Some(Some(value)) => {
                    tx.execute(
                        "INSERT INTO usage_limits (workspace_id, limit_type, value) VALUES (?1, ?2, ?3)
                         ON CONFLICT (workspace_id, limit_type) DO UPDATE SET value = excluded.value",
                        params![ws.to_string(), limit_type, value],
                    )?;
                }
            }
        }
        let after = load_settings(&tx, org, ws)?;
        record_update(
            &tx,
            actor,
            org,
            "workspace.update_settings",
            "workspace",
            ws,
            &before,
            &after,
        )?;
        tx.commit()?;
        Ok(after)
    }
}

/// Records an update with its before and after values.
#[allow(clippy::too_many_arguments)]
pub(crate) fn record_update<T: Serialize>(
    conn: &Connection,
    actor: &Actor,
    org: Uuid,
    action: &str,
    target_type: &str,
    target: impl ToString,
    before: &T,
    after: &T,
) -> Result<(), StoreError> {
    record(
        conn,
        actor,
        Change {
            organization_id: Some(org),
            action,
            target_type,
            target_id: target.to_string(),
            before: snapshot(before),
            after: snapshot(after),
        },
    )
}

/// Trims a name and checks that it is non-empty and not too long.
pub(crate) fn check_name<'a>(
    field: &'static str,
    name: &'a str,
) -> Result<&'a str, DirectoryError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(DirectoryError::invalid(field, "must not be empty"));
    }
    if name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(DirectoryError::invalid(
            field,
            format!("must be at most {MAX_NAME_CHARS} characters, without control characters"),
        ));
    }
    Ok(name)
}

pub(crate) fn check_email(email: &str) -> Result<&str, DirectoryError> {
    let email = email.trim();
    let valid = email.len() <= 254
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && !domain.is_empty())
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if valid {
        Ok(email)
    } else {
        Err(DirectoryError::invalid(
            "email",
            format!("invalid email address {email:?}"),
        ))
    }
}

fn ensure_workspace_name_free(
    conn: &Connection,
    org: Uuid,
    name: &str,
    except: Option<Uuid>,
) -> Result<(), DirectoryError> {
    let existing: Option<String> = conn
        .query_row(
            "SELECT id FROM workspaces WHERE organization_id = ?1 AND name = ?2",
            params![org.to_string(), name],
            |r| r.get(0),
        )
        .optional()?;
    match existing {
        Some(id) if except.is_none_or(|ws| ws.to_string() != id) => Err(DirectoryError::conflict(
            "name",
            format!("a workspace named {name:?} exists in this organization"),
        )),
        _ => Ok(()),
    }
}

fn plan_from_row(r: &Row<'_>) -> rusqlite::Result<Plan> {
    Ok(Plan {
        id: r.get(0)?,
        name: r.get(1)?,
        max_workspaces: r.get(2)?,
        rbac: r.get(3)?,
        organization_user_role: r.get(4)?,
        resource_tags: r.get(5)?,
    })
}

pub(crate) fn load_plan(conn: &Connection, id: &str) -> Result<Plan, DirectoryError> {
    conn.query_row(
        "SELECT id, name, max_workspaces, rbac, organization_user_role, resource_tags
         FROM plans WHERE id = ?1",
        params![id],
        plan_from_row,
    )
    .optional()?
    .ok_or_else(|| DirectoryError::invalid("plan", format!("unknown plan {id:?}")))
}

pub(crate) fn load_organization(
    conn: &Connection,
    org: Uuid,
) -> Result<Organization, DirectoryError> {
    let row = conn
        .query_row(
            "SELECT o.name, o.is_personal, o.plan_id, o.settings, o.created_at,
                    (SELECT COUNT(*) FROM workspaces w WHERE w.organization_id = o.id)
             FROM organizations o WHERE o.id = ?1",
            params![org.to_string()],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, bool>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, u32>(5)?,
                ))
            },
        )
        .optional()?
        .ok_or_else(|| DirectoryError::not_found("organization", org))?;
    let (name, is_personal, plan, settings, created_at, workspace_count) = row;
    Ok(Organization {
        id: org,
        name,
        is_personal,
        plan: load_plan(conn, &plan)?.into(),
        settings: serde_json::from_str(&settings).unwrap_or_else(|_| json!({})),
        workspace_count,
        created_at,
    })
}

pub(crate) fn load_user(conn: &Connection, id: Uuid) -> Result<User, DirectoryError> {
    conn.query_row(
        "SELECT email, display_name, created_at FROM users WHERE id = ?1",
        params![id.to_string()],
        |r| {
            Ok(User {
                id,
                email: r.get(0)?,
                display_name: r.get(1)?,
                created_at: r.get(2)?,
            })
        },
    )
    .optional()?
    .ok_or_else(|| DirectoryError::not_found("user", id))
}

fn workspace_from_row(r: &Row<'_>) -> rusqlite::Result<Result<Workspace, StoreError>> {
    let id: String = r.get(0)?;
    let org: String = r.get(1)?;
    let name = r.get(2)?;
    let retention_tier = r.get(3)?;
    let created_at = r.get(4)?;
    Ok((|| {
        Ok(Workspace {
            id: parse_uuid("workspaces", &id)?,
            organization_id: parse_uuid("workspaces", &org)?,
            name,
            retention_tier,
            created_at,
        })
    })())
}

/// Loads a workspace of `org`; a workspace of another organization is
/// reported as not found.
pub(crate) fn load_workspace(
    conn: &Connection,
    org: Uuid,
    ws: Uuid,
) -> Result<Workspace, DirectoryError> {
    conn.query_row(
        "SELECT id, organization_id, name, retention_tier, created_at FROM workspaces
         WHERE id = ?1 AND organization_id = ?2",
        params![ws.to_string(), org.to_string()],
        workspace_from_row,
    )
    .optional()?
    .ok_or_else(|| DirectoryError::not_found("workspace", ws))?
    .map_err(DirectoryError::from)
}

fn load_settings(
    conn: &Connection,
    org: Uuid,
    ws: Uuid,
) -> Result<WorkspaceSettings, DirectoryError> {
    let workspace = load_workspace(conn, org, ws)?;
    let mut limits = UsageLimits::default();
    let mut stmt =
        conn.prepare_cached("SELECT limit_type, value FROM usage_limits WHERE workspace_id = ?1")?;
    let rows = stmt
        .query_map(params![ws.to_string()], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    for (limit_type, value) in rows {
        match limit_type.as_str() {
            "all_traces" => limits.all_traces = Some(value),
            "extended_traces" => limits.extended_traces = Some(value),
            _ => {}
        }
    }
    let retention_days = match RetentionTier::from_name(&workspace.retention_tier) {
        Some(RetentionTier::Extended) => EXTENDED_RETENTION_DAYS,
        _ => BASE_RETENTION_DAYS,
    };
    Ok(WorkspaceSettings {
        workspace_id: ws,
        retention_tier: workspace.retention_tier,
        retention_days,
        usage_limits: limits,
    })
}
