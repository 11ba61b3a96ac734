//! `portcullis admin …` run as operators run it: the real binary on a real
//! store file, with `--json` output.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Runs `portcullis admin --config CONFIG --json ARGS` and returns the exit
/// status and the parsed output.
fn admin(config: &Path, args: &[&str]) -> (bool, Value) {
    let output = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("admin")
        .arg("--config")
        .arg(config)
        .arg("--json")
        .args(args)
        .output()
        .expect("run portcullis");
    let text = String::from_utf8_lossy(&output.stdout);
    let value = serde_json::from_str(text.trim()).unwrap_or(Value::Null);
    (output.status.success(), value)
}

#[test]
fn admin_cli_bootstraps_an_organization() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("portcullis.toml");
    let db = dir.path().join("portcullis.db");
    std::fs::write(
        &config,
        format!(
            "[store]\nurl = \"sqlite://{}\"\nbootstrap = false\n",
            db.display()
        ),
    )
    .unwrap();

    let (ok, user) = admin(&config, &["users", "create", "--email", "ops@example.test"]);
    assert!(ok, "users create failed");
    assert!(user["api_key"].as_str().unwrap().starts_with("lsv2_pt_"));
    assert_eq!(user["result"]["organization"]["is_personal"], true);

    let (ok, org) = admin(
        &config,
        &[
            "orgs",
            "create",
            "--name",
            "Ops",
            "--plan",
            "plus",
            "--owner",
            "ops@example.test",
        ],
    );
    assert!(ok, "orgs create failed");
    let org_id = org["result"]["organization"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let scoped = |args: &[&str]| {
        let mut all = vec!["--organization", org_id.as_str()];
        all.extend_from_slice(args);
        admin(&config, &all)
    };

    let (ok, workspace) = scoped(&["workspaces", "create", "Staging"]);
    assert!(ok, "workspaces create failed");
    assert_eq!(workspace["name"], "Staging");

    let (ok, _) = scoped(&["workspaces", "create", "Staging"]);
    assert!(!ok, "a duplicate workspace name was accepted");

    let (ok, _) = scoped(&[
        "roles",
        "create",
        "--name",
        "Reader",
        "--permission",
        "runs:read",
    ]);
    assert!(!ok, "a custom role was created on a plan without RBAC");

    let (ok, keys) = scoped(&["keys", "list", "--user", "ops@example.test"]);
    assert!(ok, "keys list failed");
    assert_eq!(keys["items"].as_array().unwrap().len(), 1);
    assert!(keys["items"][0].get("api_key").is_none());

    let (ok, audit) = scoped(&["audit"]);
    assert!(ok, "audit failed");
    let first = &audit["items"][0];
    assert_eq!(first["action"], "workspace.create");
    assert_eq!(first["actor"], "cli");
}
