use super::*;

const MINIMAL: &str = r#"
[[upstreams]]
name = "api"
url = "http://127.0.0.1:9000/base/"

[[routes]]
id = "runs"
path = "/runs/**"
methods = ["GET"]
permission = "runs:read"
upstream = "api"
"#;

fn error_of(text: &str) -> ConfigError {
    Config::from_toml(text).expect_err("config should be rejected")
}

#[test]
fn shipped_config_is_valid() {
    let text = include_str!("../../config/portcullis.toml");
    let config = Config::from_toml(text).expect("shipped config");
    assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
    assert_eq!(config.store.url, DEFAULT_STORE_URL);
    assert_eq!(config.legacy_sunset, DEFAULT_LEGACY_SUNSET);
    assert!(!config.routes.rules().is_empty());
}

#[test]
fn defaults_apply_to_missing_sections() {
    let config = Config::from_toml(MINIMAL).unwrap();
    assert_eq!(config.cache.ttl, DEFAULT_CACHE_TTL);
    assert_eq!(config.cache.negative_ttl, DEFAULT_NEGATIVE_TTL);
    assert_eq!(config.limits.max_header_bytes, DEFAULT_MAX_HEADER_BYTES);
    match &config.upstreams[0].target {
        UpstreamTarget::Http { base_path, .. } => assert_eq!(base_path, "/base"),
        UpstreamTarget::Echo => panic!("expected an HTTP upstream"),
    }
}

#[test]
fn unknown_field_is_rejected_with_its_line() {
    let err = error_of("[server]\nlisten = \"127.0.0.1:1\"\nlisten_port = 8080\n");
    assert_eq!(err.line(), Some(3));
    assert!(err.to_string().contains("listen_port"), "{err}");
}

#[test]
fn unknown_upstream_names_field_and_line() {
    let text = MINIMAL.replace("upstream = \"api\"", "upstream = \"missing\"");
    let err = error_of(&text);
    assert_eq!(err.field(), "routes[0].upstream");
    assert_eq!(err.line(), Some(11));
    assert!(err.to_string().contains("missing"));
}

#[test]
fn invalid_values_name_their_field() {
    let cases = [
        ("[server]\nlisten = \"nowhere\"\n", "server.listen"),
        ("[store]\nurl = \"postgres://x\"\n", "store.url"),
        ("[cache]\ncapacity = 0\n", "cache.capacity"),
        (
            "[credentials]\nlegacy_sunset = \"15/08/2024\"\n",
            "credentials.legacy_sunset",
        ),
        ("[headers]\nrole = \"bad header\"\n", "headers.role"),
        (
            "[[upstreams]]\nname = \"a\"\nurl = \"ftp://x\"\n",
            "upstreams[0].url",
        ),
        (
            "[[upstreams]]\nname = \"a\"\nurl = \"http://u:p@x\"\n",
            "upstreams[0].url",
        ),
    ];
    for (text, field) in cases {
        let err = error_of(text);
        assert_eq!(err.field(), field, "{err}");
        assert!(err.line().is_some(), "{err}");
    }
}

#[test]
fn userinfo_never_appears_in_error() {
    let err = error_of("[[upstreams]]\nname = \"a\"\nurl = \"http://user:hunter2@x\"\n");
    assert!(!err.to_string().contains("hunter2"));
}

#[test]
fn route_errors_name_their_field() {
    let replace = |from: &str, to: &str| MINIMAL.replace(from, to);
    let cases = [
        (
            replace("path = \"/runs/**\"", "path = \"runs\""),
            "routes[0].path",
        ),
        (
            replace("path = \"/runs/**\"", "path = \"/runs/**/x\""),
            "routes[0].path",
        ),
        (
            replace("path = \"/runs/**\"", "path = \"/runs/%2e%2e\""),
            "routes[0].path",
        ),
        (
            replace("methods = [\"GET\"]", "methods = []"),
            "routes[0].methods",
        ),
        (
            replace("methods = [\"GET\"]", "methods = [\"get\"]"),
            "routes[0].methods",
        ),
        (
            replace("permission = \"runs:read\"", "permission = \"Runs Read\""),
            "routes[0].permission",
        ),
        (
            replace("id = \"runs\"", "id = \"has space\""),
            "routes[0].id",
        ),
        (
            replace(
                "upstream = \"api\"",
                "upstream = \"api\"\nstrip_prefix = \"/run\"",
            ),
            "routes[0].strip_prefix",
        ),
    ];
    for (text, field) in cases {
        let err = error_of(&text);
        assert_eq!(err.field(), field, "{err}");
    }
}

#[test]
fn overlapping_rules_are_rejected_naming_both() {
    let text = format!(
        "{MINIMAL}\n[[routes]]\nid = \"one-run\"\npath = \"/runs/{{id}}\"\nmethods = [\"GET\", \"POST\"]\n\
         permission = \"runs:read\"\nupstream = \"api\"\n"
    );
    let err = error_of(&text);
    let message = err.to_string();
    assert!(message.contains("\"runs\""), "{message}");
    assert!(message.contains("\"one-run\""), "{message}");
}

#[test]
fn disjoint_methods_do_not_overlap() {
    let text = format!(
        "{MINIMAL}\n[[routes]]\nid = \"create\"\npath = \"/runs/**\"\nmethods = [\"POST\"]\n\
         permission = \"runs:create\"\nupstream = \"api\"\n"
    );
    let config = Config::from_toml(&text).unwrap();
    assert_eq!(config.routes.rules().len(), 2);
}

#[test]
fn identity_header_copies_match_any_case_and_underscore() {
    let headers = IdentityHeaders::default();
    for name in [
        "x-auth-role",
        "x_auth_role",
        "x-auth_role",
        "x-tenant-id",
        "x_auth_retention_tier",
    ] {
        let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
        assert!(headers.is_identity_header(&name), "{name}");
    }
    let other = HeaderName::from_static("x-auth-roles");
    assert!(!headers.is_identity_header(&other));
}
