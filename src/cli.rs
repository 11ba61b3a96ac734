//! The command line: run the gateway, set up a store, manage keys.

mod admin;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use uuid::Uuid;

use crate::config::{Config, LogFormat};
use crate::credential::{KeyKind, SecretKey};
use crate::server::Server;
use crate::store::sqlite::{NewKey, Setup};
use crate::store::{unix_now, KeyRecord, SqliteStore};

#[derive(Debug, Parser)]
#[command(name = "portcullis", version, about = "An authenticating API gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Manage organizations, workspaces, members, roles, service accounts,
    /// keys, tags, settings and the audit log in the local store.
    Admin(admin::AdminArgs),
    /// Run the gateway.
    Serve {
        /// Configuration file.
        #[arg(long, default_value = "config/portcullis.toml")]
        config: PathBuf,
    },
    /// Validate a configuration file and exit non-zero on the first error.
    CheckConfig {
        #[arg(long)]
        config: PathBuf,
    },
    /// Create the store, an organization, a workspace and an admin user, and
    /// print the admin's first personal access token once.
    Init {
        #[arg(long, default_value = "config/portcullis.toml")]
        config: PathBuf,
        #[arg(long, default_value = "Default")]
        organization: String,
        #[arg(long, default_value = "Default")]
        workspace: String,
        #[arg(long, default_value = "admin@localhost")]
        email: String,
        /// Plan of the new organization: developer, plus or enterprise.
        #[arg(long, default_value = "enterprise")]
        plan: String,
        /// Print ids and key as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Create, list and revoke API keys in the local store.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Run a small upstream that answers every request with a JSON
    /// description of what it received.
    Echo {
        #[arg(long, default_value = "127.0.0.1:9000")]
        listen: SocketAddr,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum KindArg {
    Pat,
    Service,
    Legacy,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a key and print its secret once.
    Create {
        #[arg(long, default_value = "config/portcullis.toml")]
        config: PathBuf,
        #[arg(long, value_enum, default_value = "pat")]
        kind: KindArg,
        /// Organization id; defaults to the only organization.
        #[arg(long)]
        organization: Option<Uuid>,
        /// Owner of a personal access token: user id or email.
        #[arg(long)]
        user: Option<String>,
        /// Owner of a service key.
        #[arg(long)]
        service_account: Option<Uuid>,
        /// Workspace of a legacy key, or a restriction of another key.
        #[arg(long)]
        workspace: Option<Uuid>,
        #[arg(long, default_value = "")]
        description: String,
        /// Lifetime, such as "90days" or "12h".
        #[arg(long, value_parser = humantime::parse_duration)]
        expires_in: Option<Duration>,
        #[arg(long)]
        json: bool,
    },
    /// List an organization's keys, without secrets.
    List {
        #[arg(long, default_value = "config/portcullis.toml")]
        config: PathBuf,
        #[arg(long)]
        organization: Option<Uuid>,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by id.
    Revoke {
        #[arg(long, default_value = "config/portcullis.toml")]
        config: PathBuf,
        id: Uuid,
    },
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Sends logs to standard error, as text or JSON lines; `RUST_LOG` sets
/// the filter (`info` by default).
fn init_tracing(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_current_span(false).init(),
    }
}

fn run(command: Command) -> Result<(), String> {
    if !matches!(command, Command::Serve { .. }) {
        init_tracing(LogFormat::Text);
    }
    match command {
        Command::Serve { config } => serve(&config),
        Command::CheckConfig { config } => {
            let loaded = load_config(&config)?;
            println!(
                "{}: valid ({} upstreams, {} route rules)",
                config.display(),
                loaded.upstreams.len(),
                loaded.routes.rules().len()
            );
            Ok(())
        }
        Command::Init {
            config,
            organization,
            workspace,
            email,
            plan,
            json,
        } => {
            let config = load_config(&config)?;
            let store = open_store(&config)?;
            if !store.is_empty().map_err(|e| e.to_string())? {
                return Err(format!(
                    "the store {} already holds an organization; \
                     use `portcullis keys create` to make more keys",
                    config.store.url
                ));
            }
            let (setup, key) = bootstrap(&store, &organization, &workspace, &email, &plan)?;
            write_stdout(&bootstrap_text(&setup, &key, json))
                .map_err(|e| format!("cannot write the new key to standard output: {e}"))?;
            Ok(())
        }
        Command::Keys(keys) => run_keys(keys),
        Command::Admin(args) => admin::run(args),
        Command::Echo { listen } => runtime()?.block_on(async {
            crate::proxy::echo::run(listen)
                .await
                .map_err(|e| format!("echo service on {listen} failed: {e}"))
        }),
    }
}

fn load_config(path: &Path) -> Result<Config, String> {
    Config::load(path).map_err(|e| e.to_string())
}

fn open_store(config: &Config) -> Result<SqliteStore, String> {
    SqliteStore::open_url(&config.store.url).map_err(|e| e.to_string())
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

/// Creates the first organization, workspace, admin user and admin key.
fn bootstrap(
    store: &SqliteStore,
    organization: &str,
    workspace: &str,
    email: &str,
    plan: &str,
) -> Result<(Setup, (KeyRecord, SecretKey)), String> {
    let setup = store
        .setup(organization, workspace, email, plan)
        .map_err(|e| format!("cannot create the first organization: {e}"))?;
    let key = store
        .create_key(&NewKey {
            kind: KeyKind::Personal,
            organization_id: setup.organization_id,
            user_id: Some(setup.user_id),
            service_account_id: None,
            workspace_id: None,
            description: "first admin key".to_string(),
            expires_at: None,
        })
        .map_err(|e| format!("cannot create the first key: {e}"))?;
    Ok((setup, key))
}

/// The text that hands over the first key: one JSON object, or lines for
/// a person.
fn bootstrap_text(setup: &Setup, (record, secret): &(KeyRecord, SecretKey), json: bool) -> String {
    if json {
        let out = serde_json::json!({
            "organization_id": setup.organization_id,
            "workspace_id": setup.workspace_id,
            "user_id": setup.user_id,
            "key_id": record.id,
            "api_key": secret.expose(),
        });
        format!("{out}\n")
    } else {
        format!(
            "Created organization {}\nCreated workspace    {}\nCreated admin user   {}\n\n\
             Admin personal access token (shown only this once; store it now):\n\n    {}\n\n",
            setup.organization_id,
            setup.workspace_id,
            setup.user_id,
            secret.expose()
        )
    }
}

/// Writes to standard output in one call. A closed or failing stdout must
/// not stop the gateway, so the error is returned rather than panicking as
/// `println!` would.
fn write_stdout(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()
}

fn serve(path: &Path) -> Result<(), String> {
    let config = load_config(path)?;
    init_tracing(config.log_format);
    let store = open_store(&config)?;
    if config.store.bootstrap && store.is_empty().map_err(|e| e.to_string())? {
        let (setup, key) = bootstrap(
            &store,
            "Default",
            "Default",
            "admin@localhost",
            "enterprise",
        )?;
        let text = format!(
            "{}Try it:\n    curl -H 'x-api-key: {}' http://{}/echo\n\n",
            bootstrap_text(&setup, &key, false),
            key.1.expose(),
            config.listen
        );
        if let Err(error) = write_stdout(&text) {
            tracing::warn!(
                %error,
                "could not print the first admin key; create one with `portcullis keys create`"
            );
        }
    }
    let (listen, metrics) = (config.listen, config.metrics_listen);
    let admin_config = config.admin;
    let admin_store = store.clone();
    runtime()?.block_on(async move {
        let server = Server::bind(config, Arc::new(store))
            .await
            .map_err(|e| format!("cannot start on {listen} (metrics {metrics}): {e}"))?
            .with_config_path(path.to_path_buf());
        tracing::info!(
            %listen,
            %metrics,
            config = %path.display(),
            version = env!("CARGO_PKG_VERSION"),
            "portcullis listening"
        );
        // The admin API shares the gateway's authenticator, so that its
        // writes invalidate the key cache the gateway reads.
        let admin_state = crate::admin::AdminState::new(
            server.gateway().auth().clone(),
            admin_store,
            admin_config.workspace_admins_can_invite,
        )
        .with_limits(server.gateway().limits().clone());
        let admin = crate::admin::AdminServer::bind(admin_config.listen, admin_state)
            .await
            .map_err(|e| format!("cannot start the admin API on {}: {e}", admin_config.listen))?;
        tracing::info!(listen = %admin_config.listen, "admin API listening");
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let admin = tokio::spawn(admin.run(async move {
            let _ = stopped.changed().await;
        }));
        server
            .run(async move {
                shutdown_signal().await;
                let _ = stop.send(true);
            })
            .await;
        let _ = admin.await;
        Ok(())
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

fn run_keys(command: KeysCommand) -> Result<(), String> {
    match command {
        KeysCommand::Create {
            config,
            kind,
            organization,
            user,
            service_account,
            workspace,
            description,
            expires_in,
            json,
        } => {
            let config = load_config(&config)?;
            let store = open_store(&config)?;
            let organization = organization_or_sole(&store, organization)?;
            let kind = match kind {
                KindArg::Pat => KeyKind::Personal,
                KindArg::Service => KeyKind::Service,
                KindArg::Legacy => KeyKind::Legacy,
            };
            let user_id = match user {
                None => None,
                Some(text) => Some(match Uuid::try_parse(&text) {
                    Ok(id) => id,
                    Err(_) => store
                        .user_by_email(&text)
                        .map_err(|e| e.to_string())?
                        .ok_or_else(|| format!("no user with email {text:?}"))?,
                }),
            };
            let new = NewKey {
                kind,
                organization_id: organization,
                user_id,
                service_account_id: service_account,
                workspace_id: workspace,
                description,
                expires_at: expires_in.map(|d| unix_now() + d.as_secs() as i64),
            };
            let (record, secret) = store.create_key(&new).map_err(|e| e.to_string())?;
            if json {
                let out = serde_json::json!({
                    "key_id": record.id,
                    "kind": record.kind.as_str(),
                    "api_key": secret.expose(),
                });
                println!("{out}");
            } else {
                println!("Created key {} ({})", record.id, record.kind);
                println!("Secret (shown only this once): {}", secret.expose());
            }
            Ok(())
        }
        KeysCommand::List {
            config,
            organization,
            json,
        } => {
            let config = load_config(&config)?;
            let store = open_store(&config)?;
            let organization = organization_or_sole(&store, organization)?;
            let keys = store.list_keys(organization).map_err(|e| e.to_string())?;
            if json {
                let list: Vec<_> = keys.iter().map(key_json).collect();
                println!("{}", serde_json::Value::Array(list));
            } else {
                println!(
                    "{:<36}  {:<8} {:<14} {:<8} description",
                    "id", "kind", "prefix", "state"
                );
                for key in &keys {
                    println!(
                        "{:<36}  {:<8} {:<14} {:<8} {}",
                        key.id,
                        key.kind,
                        key.display_prefix,
                        key_state(key),
                        key.description
                    );
                }
            }
            Ok(())
        }
        KeysCommand::Revoke { config, id } => {
            let config = load_config(&config)?;
            let store = open_store(&config)?;
            if store.revoke_key(id).map_err(|e| e.to_string())? {
                println!("Revoked key {id}");
                Ok(())
            } else {
                Err(format!("no key with id {id}"))
            }
        }
    }
}

fn organization_or_sole(store: &SqliteStore, given: Option<Uuid>) -> Result<Uuid, String> {
    match given {
        Some(id) => Ok(id),
        None => store
            .sole_organization()
            .map_err(|e| e.to_string())?
            .ok_or_else(|| {
                "the store holds several organizations or none; pass --organization".to_string()
            }),
    }
}

fn key_state(key: &KeyRecord) -> &'static str {
    if key.revoked_at.is_some() {
        "revoked"
    } else if key.disabled {
        "disabled"
    } else if key.expires_at.is_some_and(|at| at <= unix_now()) {
        "expired"
    } else {
        "active"
    }
}

fn key_json(key: &KeyRecord) -> serde_json::Value {
    serde_json::json!({
        "id": key.id,
        "kind": key.kind.as_str(),
        "display_prefix": key.display_prefix,
        "description": key.description,
        "organization_id": key.organization_id,
        "user_id": key.user_id,
        "service_account_id": key.service_account_id,
        "workspace_id": key.workspace_id,
        "created_at": key.created_at,
        "expires_at": key.expires_at,
        "last_used_at": key.last_used_at,
        "state": key_state(key),
    })
}
