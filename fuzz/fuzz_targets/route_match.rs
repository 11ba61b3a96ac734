//! Checks route lookup on canonical paths: a found rule's pattern matches the
//! path and the rule lists the method, no second rule matches the same request,
//! and stripping the rule's prefix leaves a path that starts with `/`.
#![no_main]

use std::sync::OnceLock;

use http::Method;
use libfuzzer_sys::fuzz_target;
use portcullis::config::Config;
use portcullis::routing::canonical::canonicalize;

/// Literal, parameter and `**` rules, overlapping by prefix but never by
/// request, with and without a strip prefix.
const CONFIG: &str = r#"
[[upstreams]]
name = "api"
url = "http://127.0.0.1:9/base"

[[upstreams]]
name = "echo"
url = "builtin:echo"

[[routes]]
id = "root"
path = "/"
methods = ["GET"]
permission = "public"
upstream = "echo"

[[routes]]
id = "info"
path = "/api/v1/info"
methods = ["GET", "HEAD"]
permission = "public"
upstream = "api"

[[routes]]
id = "runs-read"
path = "/api/v1/runs/**"
methods = ["GET"]
permission = "runs:read"
upstream = "api"
strip_prefix = "/api/v1"

[[routes]]
id = "runs-write"
path = "/api/v1/runs/**"
methods = ["POST", "PATCH"]
permission = "runs:create"
upstream = "api"

[[routes]]
id = "run-delete"
path = "/api/v1/runs/{run_id}"
methods = ["DELETE"]
permission = "runs:delete"
upstream = "api"

[[routes]]
id = "feedback"
path = "/api/v1/runs/{run_id}/feedback/{feedback_id}"
methods = ["PUT"]
permission = "feedback:update"
upstream = "api"

[[routes]]
id = "sessions"
path = "/api/v1/sessions/{session_id}/runs"
methods = ["GET"]
permission = "runs:read"
upstream = "api"

[[routes]]
id = "encoded"
path = "/files/caf%C3%A9"
methods = ["GET"]
permission = "public"
upstream = "echo"

[[routes]]
id = "svc"
path = "/svc/**"
methods = ["GET", "POST", "OPTIONS"]
permission = "runs:read"
upstream = "api"
strip_prefix = "/svc/"
"#;

/// Methods the fuzzer picks from with its first byte: the rules' methods, one
/// that no rule lists, and an extension method.
const METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "PURGE",
];

fn config() -> &'static Config {
    static CONFIG_CELL: OnceLock<Config> = OnceLock::new();
    CONFIG_CELL.get_or_init(|| Config::from_toml(CONFIG).expect("the fuzz config is valid"))
}

fuzz_target!(|data: &[u8]| {
    let Some((&method_byte, path_bytes)) = data.split_first() else {
        return;
    };
    let Ok(path) = std::str::from_utf8(path_bytes) else {
        return;
    };
    let method_name = METHODS[usize::from(method_byte) % METHODS.len()];
    let method = Method::from_bytes(method_name.as_bytes()).expect("listed methods are valid");
    let Ok(path) = canonicalize(path) else {
        return;
    };

    let routes = &config().routes;
    let Some(rule) = routes.find(&method, &path) else {
        return;
    };
    assert!(
        rule.pattern.matches(&path),
        "rule {:?} was found for {path:?} but its pattern does not match",
        rule.id
    );
    assert!(
        rule.methods.contains(&method),
        "rule {:?} was found for {method} but does not list it",
        rule.id
    );

    let matching: Vec<&str> = routes
        .rules()
        .iter()
        .filter(|other| other.methods.contains(&method) && other.pattern.matches(&path))
        .map(|other| &*other.id)
        .collect();
    assert_eq!(
        matching,
        [&*rule.id],
        "{method} {path:?} matches more than one rule"
    );

    let upstream_path = rule.upstream_path(&path);
    assert!(
        upstream_path.starts_with('/'),
        "rule {:?} strips {path:?} to {upstream_path:?}, which does not start with '/'",
        rule.id
    );
});
