//! `portcullis admin …`: the admin API's operations on the local store,
//! for bootstrapping and scripts. Changes are audited with the actor
//! `cli`. A running gateway applies them within its cache lifetime
//! (`[cache] ttl`), because this process cannot drop that cache.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::config::Config;
use crate::credential::{KeyHash, KeyKind, SecretKey};
use crate::identity::RetentionTier;
use crate::store::sqlite::audit::AuditFilter;
use crate::store::sqlite::directory::SettingsChange;
use crate::store::sqlite::keys::{ImportedKey, Key, KeyChange, KeyScope};
use crate::store::sqlite::members::NewInvitation;
use crate::store::sqlite::roles::RoleChange;
use crate::store::sqlite::tags::TaggingFilter;
use crate::store::sqlite::{Actor, DirectoryError, NewKey, PageRequest};
use crate::store::{unix_now, SqliteStore};

/// Options every admin command takes.
#[derive(Debug, Args)]
pub(super) struct AdminArgs {
    /// Configuration file, for the store URL.
    #[arg(long, global = true, default_value = "config/portcullis.toml")]
    config: PathBuf,
    /// Organization id; defaults to the only organization in the store.
    #[arg(long, global = true)]
    organization: Option<Uuid>,
    /// Print the result as one JSON value.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Users and their personal organizations.
    #[command(subcommand)]
    Users(UsersCommand),
    /// The organization and its plan.
    #[command(subcommand)]
    Orgs(OrgsCommand),
    #[command(subcommand)]
    Workspaces(WorkspacesCommand),
    /// Organization and workspace members.
    #[command(subcommand)]
    Members(MembersCommand),
    #[command(subcommand)]
    Invitations(InvitationsCommand),
    /// Built-in and custom roles.
    #[command(subcommand)]
    Roles(RolesCommand),
    #[command(subcommand)]
    ServiceAccounts(ServiceAccountsCommand),
    /// Personal access tokens, service keys and legacy keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Resource tags of a workspace.
    #[command(subcommand)]
    Tags(TagsCommand),
    /// A workspace's retention tier and usage limits.
    #[command(subcommand)]
    Settings(SettingsCommand),
    /// The audit log, newest first: of all organizations unless
    /// --organization names one.
    Audit {
        /// Such as `user:<id>` or `cli`.
        #[arg(long)]
        actor: Option<String>,
        /// Unix seconds, inclusive.
        #[arg(long)]
        since: Option<i64>,
        /// Unix seconds, exclusive.
        #[arg(long)]
        until: Option<i64>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

#[derive(Debug, Subcommand)]
enum UsersCommand {
    /// Create a user with a personal organization, and print the user's
    /// first personal access token once.
    Create {
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "")]
        name: String,
    },
}

#[derive(Debug, Subcommand)]
enum OrgsCommand {
    /// Create a shared organization owned by a user, and print the owner's
    /// first personal access token in it once.
    Create {
        #[arg(long)]
        name: String,
        /// developer, plus or enterprise.
        #[arg(long, default_value = "enterprise")]
        plan: String,
        /// The owner: user id or email.
        #[arg(long)]
        owner: String,
    },
    Show,
    /// Move the organization to another plan.
    SetPlan {
        plan: String,
    },
    Plans,
}

#[derive(Debug, Subcommand)]
enum WorkspacesCommand {
    List,
    Create {
        name: String,
    },
    Rename {
        workspace: Uuid,
        name: String,
    },
    /// Delete a workspace and revoke its keys.
    Delete {
        workspace: Uuid,
    },
}

#[derive(Debug, Subcommand)]
enum MembersCommand {
    /// List organization members, or a workspace's with --workspace.
    List {
        #[arg(long)]
        workspace: Option<Uuid>,
    },
    /// Change a member's organization role.
    SetRole {
        user: String,
        role: String,
    },
    /// Remove a user from the organization and revoke their tokens there.
    Remove {
        user: String,
    },
    /// Add a member to a workspace with a workspace role, or change it.
    SetWorkspaceRole {
        workspace: Uuid,
        user: String,
        role: String,
    },
    RemoveFromWorkspace {
        workspace: Uuid,
        user: String,
    },
}

#[derive(Debug, Subcommand)]
enum InvitationsCommand {
    List,
    Create {
        #[arg(long)]
        email: String,
        #[arg(long, default_value = crate::authz::ORGANIZATION_USER)]
        role: String,
        #[arg(long)]
        workspace: Option<Uuid>,
        #[arg(long, default_value = crate::authz::WORKSPACE_VIEWER)]
        workspace_role: String,
    },
    Revoke {
        invitation: Uuid,
    },
    /// Accept for a user, and print their first token in the organization.
    Accept {
        invitation: Uuid,
        user: String,
    },
}

#[derive(Debug, Subcommand)]
enum RolesCommand {
    List,
    /// Create a custom workspace role (plans with RBAC only).
    Create {
        #[arg(long)]
        name: String,
        #[arg(long = "permission", required = true)]
        permissions: Vec<String>,
    },
    /// Replace a custom role's permissions.
    SetPermissions {
        role: String,
        #[arg(long = "permission", required = true)]
        permissions: Vec<String>,
    },
    Delete {
        role: String,
    },
}

#[derive(Debug, Subcommand)]
enum ServiceAccountsCommand {
    List,
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        role: Option<String>,
    },
    /// Give a service account a workspace role.
    Assign {
        account: Uuid,
        workspace: Uuid,
        role: String,
    },
    /// Delete a service account and its keys.
    Delete {
        account: Uuid,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// List a user's personal access tokens, or a workspace's service keys.
    List {
        #[arg(
            long,
            conflicts_with = "workspace",
            required_unless_present = "workspace"
        )]
        user: Option<String>,
        #[arg(long)]
        workspace: Option<Uuid>,
    },
    /// Create a personal access token and print it once.
    CreatePat {
        #[arg(long)]
        user: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Create a service key restricted to a workspace and print it once.
    CreateService {
        #[arg(long)]
        workspace: Uuid,
        #[arg(long)]
        service_account: Uuid,
        #[arg(long, default_value = "")]
        description: String,
    },
    Revoke {
        key: Uuid,
    },
    Disable {
        key: Uuid,
    },
    Enable {
        key: Uuid,
    },
    /// Set a key's lifetime from now, such as "30days", or clear it.
    Expire {
        key: Uuid,
        #[arg(long, value_parser = humantime::parse_duration, conflicts_with = "never")]
        r#in: Option<std::time::Duration>,
        #[arg(long)]
        never: bool,
    },
    /// Replace a key; the old one works for the grace period.
    Rotate {
        key: Uuid,
        #[arg(long, value_parser = humantime::parse_duration, default_value = "1day")]
        grace: std::time::Duration,
    },
    /// Import a key made elsewhere by its SHA-256 hash.
    Import {
        #[arg(long)]
        kind: String,
        /// 64 hex digits.
        #[arg(long)]
        hash: String,
        #[arg(long)]
        display_prefix: String,
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        service_account: Option<Uuid>,
        #[arg(long)]
        workspace: Option<Uuid>,
        #[arg(long, default_value = "")]
        description: String,
    },
}

#[derive(Debug, Subcommand)]
enum TagsCommand {
    Keys {
        workspace: Uuid,
    },
    AddKey {
        workspace: Uuid,
        key: String,
    },
    Values {
        workspace: Uuid,
        tag_key: Uuid,
    },
    AddValue {
        workspace: Uuid,
        tag_key: Uuid,
        value: String,
    },
    /// Put a tag value on a resource.
    Tag {
        workspace: Uuid,
        tag_value: Uuid,
        resource_type: String,
        resource_id: String,
    },
    /// List the resources with a tag value, or the tags of a resource.
    Query {
        workspace: Uuid,
        #[arg(long)]
        tag_value: Option<Uuid>,
        #[arg(long, requires = "resource_id")]
        resource_type: Option<String>,
        #[arg(long, requires = "resource_type")]
        resource_id: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum SettingsCommand {
    Show {
        workspace: Uuid,
    },
    Set {
        workspace: Uuid,
        /// base (14 days) or extended (400 days).
        #[arg(long)]
        retention: Option<String>,
        /// Monthly limit on all traces, or "none".
        #[arg(long)]
        all_traces: Option<String>,
        /// Monthly limit on extended-retention traces, or "none".
        #[arg(long)]
        extended_traces: Option<String>,
    },
}

/// A command's result, and the secret to show once, if any.
struct Outcome {
    value: Value,
    secret: Option<SecretKey>,
}

impl Outcome {
    fn of<T: Serialize>(value: &T) -> Result<Self, String> {
        let value = serde_json::to_value(value).map_err(|e| e.to_string())?;
        Ok(Self {
            value,
            secret: None,
        })
    }

    fn with_secret<T: Serialize>(value: &T, secret: SecretKey) -> Result<Self, String> {
        let mut outcome = Self::of(value)?;
        outcome.secret = Some(secret);
        Ok(outcome)
    }
}

/// Runs `portcullis admin …`.
pub(super) fn run(args: AdminArgs) -> Result<(), String> {
    let config = Config::load(&args.config).map_err(|e| e.to_string())?;
    let store = SqliteStore::open_url(&config.store.url).map_err(|e| e.to_string())?;
    let context = Context {
        store,
        organization: args.organization,
        actor: Actor::cli(),
    };
    let outcome = context.run(args.command).map_err(|e| describe(&e))?;
    print(&outcome, args.json);
    Ok(())
}

struct Context {
    store: SqliteStore,
    organization: Option<Uuid>,
    actor: Actor,
}

impl Context {
    fn org(&self) -> Result<Uuid, DirectoryError> {
        match self.organization {
            Some(id) => Ok(id),
            None => self.store.sole_organization()?.ok_or_else(|| {
                DirectoryError::invalid(
                    "--organization",
                    "the store holds several organizations or none",
                )
            }),
        }
    }

    /// Finds a user by id or email.
    fn user(&self, text: &str) -> Result<Uuid, DirectoryError> {
        if let Ok(id) = Uuid::try_parse(text) {
            return Ok(id);
        }
        self.store
            .user_by_email(text)?
            .ok_or_else(|| DirectoryError::not_found("user", text))
    }

    fn run(&self, command: AdminCommand) -> Result<Outcome, DirectoryError> {
        let (s, actor) = (&self.store, &self.actor);
        let all = PageRequest {
            limit: crate::store::sqlite::audit::MAX_PAGE_LIMIT,
            offset: 0,
        };
        let outcome = match command {
            AdminCommand::Users(UsersCommand::Create { email, name }) => {
                let created = s.create_user_with_personal_org(actor, &email, &name)?;
                let (_, secret) = s.create_personal_token(
                    actor,
                    created.organization.id,
                    created.user.id,
                    "first key",
                    None,
                )?;
                Outcome::with_secret(&created, secret)
            }
            AdminCommand::Orgs(command) => match command {
                OrgsCommand::Create { name, plan, owner } => {
                    let created =
                        s.create_shared_organization(actor, &name, &plan, self.user(&owner)?)?;
                    let value = serde_json::json!({
                        "organization": created.organization,
                        "workspace": created.workspace,
                        "key": created.key,
                    });
                    Outcome::with_secret(&value, created.secret)
                }
                OrgsCommand::Show => Outcome::of(&s.organization(self.org()?)?),
                OrgsCommand::SetPlan { plan } => {
                    Outcome::of(&s.set_plan(actor, self.org()?, &plan)?)
                }
                OrgsCommand::Plans => Outcome::of(&s.plans()?),
            },
            AdminCommand::Workspaces(command) => match command {
                WorkspacesCommand::List => {
                    Outcome::of(&s.list_workspaces(self.org()?, None, all)?)
                }
                WorkspacesCommand::Create { name } => {
                    Outcome::of(&s.add_workspace(actor, self.org()?, &name)?)
                }
                WorkspacesCommand::Rename { workspace, name } => {
                    Outcome::of(&s.rename_workspace(actor, self.org()?, workspace, &name)?)
                }
                WorkspacesCommand::Delete { workspace } => {
                    s.delete_workspace(actor, self.org()?, workspace)?;
                    Outcome::of(&serde_json::json!({ "deleted": workspace }))
                }
            },
            AdminCommand::Members(command) => self.members(command, all)?,
            AdminCommand::Invitations(command) => match command {
                InvitationsCommand::List => Outcome::of(&s.list_invitations(self.org()?, all)?),
                InvitationsCommand::Create {
                    email,
                    role,
                    workspace,
                    workspace_role,
                } => {
                    let new = NewInvitation {
                        email,
                        role_id: role,
                        workspace: workspace.map(|ws| (ws, workspace_role)),
                    };
                    Outcome::of(&s.create_invitation(actor, self.org()?, &new)?)
                }
                InvitationsCommand::Revoke { invitation } => {
                    Outcome::of(&s.revoke_invitation(actor, self.org()?, invitation)?)
                }
                InvitationsCommand::Accept { invitation, user } => {
                    let accepted = s.accept_invitation(actor, invitation, self.user(&user)?)?;
                    let value = serde_json::json!({ "invitation": accepted.invitation, "key": accepted.key });
                    Outcome::with_secret(&value, accepted.secret)
                }
            },
            AdminCommand::Roles(command) => match command {
                RolesCommand::List => Outcome::of(&s.list_roles(self.org()?, all)?),
                RolesCommand::Create { name, permissions } => {
                    let change = RoleChange {
                        name: Some(name),
                        description: None,
                        permissions: Some(permissions),
                    };
                    Outcome::of(&s.create_role(actor, self.org()?, &change)?)
                }
                RolesCommand::SetPermissions { role, permissions } => {
                    let change = RoleChange {
                        permissions: Some(permissions),
                        ..RoleChange::default()
                    };
                    Outcome::of(&s.update_role(actor, self.org()?, &role, &change)?)
                }
                RolesCommand::Delete { role } => {
                    s.delete_role(actor, self.org()?, &role)?;
                    Outcome::of(&serde_json::json!({ "deleted": role }))
                }
            },
            AdminCommand::ServiceAccounts(command) => match command {
                ServiceAccountsCommand::List => {
                    Outcome::of(&s.list_service_accounts(self.org()?, all)?)
                }
                ServiceAccountsCommand::Create { name, role } => Outcome::of(
                    &s.add_service_account(actor, self.org()?, &name, role.as_deref())?,
                ),
                ServiceAccountsCommand::Assign {
                    account,
                    workspace,
                    role,
                } => Outcome::of(&s.set_service_account_workspace(
                    actor,
                    self.org()?,
                    workspace,
                    account,
                    Some(&role),
                )?),
                ServiceAccountsCommand::Delete { account } => {
                    s.delete_service_account(actor, self.org()?, account)?;
                    Outcome::of(&serde_json::json!({ "deleted": account }))
                }
            },
            AdminCommand::Keys(command) => self.keys(command, all)?,
            AdminCommand::Tags(command) => self.tags(command, all)?,
            AdminCommand::Settings(command) => self.settings(command)?,
            AdminCommand::Audit {
                actor,
                since,
                until,
                limit,
            } => {
                let filter = AuditFilter {
                    organization_id: self.organization,
                    actor,
                    since,
                    until,
                };
                let page = PageRequest { limit, offset: 0 };
                Outcome::of(&s.audit_log(&filter, page)?)
            }
        };
        outcome.map_err(DirectoryError::invalid_output)
    }

    fn members(
        &self,
        command: MembersCommand,
        all: PageRequest,
    ) -> Result<Result<Outcome, String>, DirectoryError> {
        let (s, actor, org) = (&self.store, &self.actor, self.org()?);
        Ok(match command {
            MembersCommand::List { workspace: None } => Outcome::of(&s.list_members(org, all)?),
            MembersCommand::List {
                workspace: Some(ws),
            } => Outcome::of(&s.list_workspace_members(org, ws, all)?),
            MembersCommand::SetRole { user, role } => {
                Outcome::of(&s.set_member_role(actor, org, self.user(&user)?, &role)?)
            }
            MembersCommand::Remove { user } => {
                let user = self.user(&user)?;
                s.remove_member(actor, org, user)?;
                Outcome::of(&serde_json::json!({ "removed": user }))
            }
            MembersCommand::SetWorkspaceRole {
                workspace,
                user,
                role,
            } => Outcome::of(&s.set_workspace_member(
                actor,
                org,
                workspace,
                self.user(&user)?,
                &role,
            )?),
            MembersCommand::RemoveFromWorkspace { workspace, user } => {
                let user = self.user(&user)?;
                s.remove_workspace_member_as(actor, org, workspace, user)?;
                Outcome::of(&serde_json::json!({ "removed": user, "workspace": workspace }))
            }
        })
    }

    fn keys(
        &self,
        command: KeysCommand,
        all: PageRequest,
    ) -> Result<Result<Outcome, String>, DirectoryError> {
        let (s, actor, org) = (&self.store, &self.actor, self.org()?);
        let change = |id: Uuid, change: KeyChange| -> Result<Key, DirectoryError> {
            s.change_key(actor, org, id, change)
        };
        Ok(match command {
            KeysCommand::List { user, workspace } => {
                let scope = match (user, workspace) {
                    (Some(user), _) => KeyScope::Personal(self.user(&user)?),
                    (None, Some(ws)) => KeyScope::Service(ws),
                    (None, None) => {
                        return Err(DirectoryError::invalid(
                            "--user",
                            "pass --user or --workspace",
                        ))
                    }
                };
                Outcome::of(&s.list_keys_in(org, scope, all)?)
            }
            KeysCommand::CreatePat { user, description } => {
                let (key, secret) =
                    s.create_personal_token(actor, org, self.user(&user)?, &description, None)?;
                Outcome::with_secret(&key, secret)
            }
            KeysCommand::CreateService {
                workspace,
                service_account,
                description,
            } => {
                let (key, secret) = s.create_service_key(
                    actor,
                    org,
                    workspace,
                    service_account,
                    &description,
                    None,
                )?;
                Outcome::with_secret(&key, secret)
            }
            KeysCommand::Revoke { key } => Outcome::of(&change(key, KeyChange::Revoke)?),
            KeysCommand::Disable { key } => Outcome::of(&change(key, KeyChange::Disable)?),
            KeysCommand::Enable { key } => Outcome::of(&change(key, KeyChange::Enable)?),
            KeysCommand::Expire { key, r#in, never } => {
                let at = match (r#in, never) {
                    (Some(lifetime), _) => {
                        Some(unix_now().saturating_add(lifetime.as_secs() as i64))
                    }
                    (None, true) => None,
                    (None, false) => {
                        return Err(DirectoryError::invalid("--in", "pass --in or --never"))
                    }
                };
                Outcome::of(&change(key, KeyChange::Expire(at))?)
            }
            KeysCommand::Rotate { key, grace } => {
                let (new, secret) = s.rotate_key(actor, org, key, grace.as_secs() as i64)?;
                Outcome::with_secret(&new, secret)
            }
            KeysCommand::Import {
                kind,
                hash,
                display_prefix,
                user,
                service_account,
                workspace,
                description,
            } => {
                let kind = KeyKind::from_name(&kind).ok_or_else(|| {
                    DirectoryError::invalid("--kind", "expected pat, service or legacy")
                })?;
                let hash = KeyHash::from_hex(&hash.to_ascii_lowercase())
                    .ok_or_else(|| DirectoryError::invalid("--hash", "expected 64 hex digits"))?;
                let imported = ImportedKey {
                    key: NewKey {
                        kind,
                        organization_id: org,
                        user_id: user.map(|u| self.user(&u)).transpose()?,
                        service_account_id: service_account,
                        workspace_id: workspace,
                        description,
                        expires_at: None,
                    },
                    hash,
                    display_prefix,
                };
                Outcome::of(&s.import_key(actor, &imported)?)
            }
        })
    }

    fn tags(
        &self,
        command: TagsCommand,
        all: PageRequest,
    ) -> Result<Result<Outcome, String>, DirectoryError> {
        let (s, actor, org) = (&self.store, &self.actor, self.org()?);
        Ok(match command {
            TagsCommand::Keys { workspace } => Outcome::of(&s.list_tag_keys(org, workspace, all)?),
            TagsCommand::AddKey { workspace, key } => {
                Outcome::of(&s.create_tag_key(actor, org, workspace, &key, "")?)
            }
            TagsCommand::Values { workspace, tag_key } => {
                Outcome::of(&s.list_tag_values(org, workspace, tag_key, all)?)
            }
            TagsCommand::AddValue {
                workspace,
                tag_key,
                value,
            } => Outcome::of(&s.create_tag_value(actor, org, workspace, tag_key, &value)?),
            TagsCommand::Tag {
                workspace,
                tag_value,
                resource_type,
                resource_id,
            } => Outcome::of(&s.create_tagging(
                actor,
                org,
                workspace,
                tag_value,
                &resource_type,
                &resource_id,
            )?),
            TagsCommand::Query {
                workspace,
                tag_value,
                resource_type,
                resource_id,
            } => {
                let filter = match (tag_value, resource_type, resource_id) {
                    (Some(value), _, _) => TaggingFilter::Value(value),
                    (None, Some(resource_type), Some(resource_id)) => TaggingFilter::Resource {
                        resource_type,
                        resource_id,
                    },
                    _ => TaggingFilter::All,
                };
                Outcome::of(&s.list_taggings(org, workspace, &filter, all)?)
            }
        })
    }

    fn settings(
        &self,
        command: SettingsCommand,
    ) -> Result<Result<Outcome, String>, DirectoryError> {
        let (s, actor, org) = (&self.store, &self.actor, self.org()?);
        Ok(match command {
            SettingsCommand::Show { workspace } => {
                Outcome::of(&s.workspace_settings(org, workspace)?)
            }
            SettingsCommand::Set {
                workspace,
                retention,
                all_traces,
                extended_traces,
            } => {
                let retention_tier = retention
                    .map(|tier| {
                        RetentionTier::from_name(&tier).ok_or_else(|| {
                            DirectoryError::invalid("--retention", "expected base or extended")
                        })
                    })
                    .transpose()?;
                let change = SettingsChange {
                    retention_tier,
                    all_traces: all_traces
                        .map(|v| parse_limit("--all-traces", &v))
                        .transpose()?,
                    extended_traces: extended_traces
                        .map(|v| parse_limit("--extended-traces", &v))
                        .transpose()?,
                };
                Outcome::of(&s.update_workspace_settings(actor, org, workspace, &change)?)
            }
        })
    }
}

impl DirectoryError {
    fn invalid_output(detail: String) -> Self {
        DirectoryError::invalid("output", detail)
    }
}

/// Parses a usage limit: a count, or `none` for no limit.
fn parse_limit(field: &'static str, text: &str) -> Result<Option<i64>, DirectoryError> {
    if text == "none" {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        DirectoryError::invalid(
            field,
            format!("invalid limit {text:?}: expected a count or none"),
        )
    })
}

fn describe(error: &DirectoryError) -> String {
    match error {
        DirectoryError::Invalid { field, detail } | DirectoryError::Conflict { field, detail } => {
            format!("{field}: {detail}")
        }
        other => other.to_string(),
    }
}

/// Prints the result: one JSON value with `--json` (the secret, if any, as
/// `api_key`), else a line per item and the secret with a warning.
fn print(outcome: &Outcome, json: bool) {
    if json {
        let mut value = outcome.value.clone();
        if let Some(secret) = &outcome.secret {
            value = serde_json::json!({ "result": value, "api_key": secret.expose() });
        }
        println!("{value}");
        return;
    }
    match outcome.value.get("items").and_then(Value::as_array) {
        Some(items) => items.iter().for_each(|item| println!("{}", summary(item))),
        None => match outcome.value.as_array() {
            Some(items) => items.iter().for_each(|item| println!("{}", summary(item))),
            None => println!("{:#}", outcome.value),
        },
    }
    if let Some(secret) = &outcome.secret {
        println!();
        println!("API key (shown only this once; store it now):");
        println!();
        println!("    {}", secret.expose());
        println!();
    }
}

/// One line naming an item by its main fields.
fn summary(item: &Value) -> String {
    const FIELDS: &[&str] = &[
        "id",
        "user_id",
        "name",
        "email",
        "key",
        "value",
        "kind",
        "display_prefix",
        "role_id",
        "state",
        "action",
        "actor",
        "target_id",
    ];
    FIELDS
        .iter()
        .filter_map(|field| match item.get(*field) {
            Some(Value::String(text)) => Some(text.clone()),
            Some(Value::Null) | None => None,
            Some(other) => Some(other.to_string()),
        })
        .collect::<Vec<_>>()
        .join("  ")
}
