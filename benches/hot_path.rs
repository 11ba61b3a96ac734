//! Criterion benchmarks of the gateway's per-request work on a cache hit,
//! without network I/O: key parsing, path canonicalization, route lookup,
//! key-cache lookup, the permission check, and the identity header rewrite.
//!
//! `hot_path/full` runs the steps of one authenticated request in the order
//! `Gateway::process` and `Authenticator::authenticate` run them. It leaves
//! out reading the credential from the header map, which is private to
//! `authn`, and the header rewrite, which the `headers` group measures.
//!
//! Run with `cargo bench --bench hot_path`. The whole run takes about 70 s
//! after the build; pass a filter such as `hot_path/full` to run fewer.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::Method;
use portcullis::authz;
use portcullis::cache::{Cached, KeyCache};
use portcullis::config::{CacheConfig, Config};
use portcullis::credential::{self, KeyHash, KeyKind};
use portcullis::identity::Identity;
use portcullis::proxy::headers;
use portcullis::routing::canonical::canonicalize;
use portcullis::routing::Requirement;
use portcullis::store::sqlite::NewKey;
use portcullis::store::{unix_now, SqliteStore, Store};

/// A configuration with 21 route rules shaped like a tracing API's. The
/// benchmarked request matches `runs-create`, rule 19, so a lookup tests
/// most rules before it finds the match.
const CONFIG: &str = r#"
[store]
url = "sqlite://unused-by-the-benchmark.db"

[[upstreams]]
name = "api"
url = "http://127.0.0.1:1984"

[[routes]]
id = "health"
path = "/api/v1/ok"
methods = ["GET"]
permission = "public"
upstream = "api"

[[routes]]
id = "info"
path = "/api/v1/info"
methods = ["GET"]
permission = "public"
upstream = "api"

[[routes]]
id = "orgs-current"
path = "/api/v1/orgs/current"
methods = ["GET"]
permission = "organization:read"
upstream = "api"

[[routes]]
id = "workspaces-read"
path = "/api/v1/workspaces/**"
methods = ["GET"]
permission = "workspaces:read"
upstream = "api"

[[routes]]
id = "workspaces-manage"
path = "/api/v1/workspaces/**"
methods = ["POST", "PATCH", "DELETE"]
permission = "workspaces:manage"
upstream = "api"

[[routes]]
id = "sessions-read"
path = "/api/v1/sessions/**"
methods = ["GET"]
permission = "projects:read"
upstream = "api"

[[routes]]
id = "sessions-create"
path = "/api/v1/sessions"
methods = ["POST"]
permission = "projects:create"
upstream = "api"

[[routes]]
id = "sessions-update"
path = "/api/v1/sessions/{session_id}"
methods = ["PATCH"]
permission = "projects:update"
upstream = "api"

[[routes]]
id = "sessions-delete"
path = "/api/v1/sessions/{session_id}"
methods = ["DELETE"]
permission = "projects:delete"
upstream = "api"

[[routes]]
id = "datasets-read"
path = "/api/v1/datasets/**"
methods = ["GET"]
permission = "datasets:read"
upstream = "api"

[[routes]]
id = "datasets-create"
path = "/api/v1/datasets"
methods = ["POST"]
permission = "datasets:create"
upstream = "api"

[[routes]]
id = "datasets-update"
path = "/api/v1/datasets/{dataset_id}"
methods = ["PATCH"]
permission = "datasets:update"
upstream = "api"

[[routes]]
id = "examples-read"
path = "/api/v1/examples/**"
methods = ["GET"]
permission = "examples:read"
upstream = "api"

[[routes]]
id = "examples-create"
path = "/api/v1/examples/**"
methods = ["POST"]
permission = "examples:create"
upstream = "api"

[[routes]]
id = "feedback-read"
path = "/api/v1/feedback/**"
methods = ["GET"]
permission = "feedback:read"
upstream = "api"

[[routes]]
id = "feedback-create"
path = "/api/v1/feedback/**"
methods = ["POST"]
permission = "feedback:create"
upstream = "api"

[[routes]]
id = "prompts-read"
path = "/api/v1/repos/**"
methods = ["GET"]
permission = "prompts:read"
upstream = "api"

[[routes]]
id = "runs-read"
path = "/api/v1/runs/**"
methods = ["GET"]
permission = "runs:read"
upstream = "api"

[[routes]]
id = "runs-create"
path = "/api/v1/runs/**"
methods = ["POST", "PATCH"]
permission = "runs:create"
upstream = "api"

[[routes]]
id = "runs-delete"
path = "/api/v1/runs/{run_id}"
methods = ["DELETE"]
permission = "runs:delete"
upstream = "api"

[[routes]]
id = "public-shared"
path = "/api/v1/public/**"
methods = ["GET"]
permission = "public"
upstream = "api"
"#;

/// The benchmarked request's path, already canonical.
const PATH: &str = "/api/v1/runs/batch";
/// The same path with a doubled slash, a dot segment and an encoded
/// unreserved character, so that canonicalization allocates and rewrites.
const PATH_TO_REWRITE: &str = "/api/v1//runs/./%62atch";
/// A path that matches `health`, the first rule.
const PATH_OF_FIRST_RULE: &str = "/api/v1/ok";
/// A path that matches no rule, so a lookup tests every rule.
const PATH_WITHOUT_ROUTE: &str = "/api/v1/unknown/resource";
/// Keys in the cache besides the benchmarked one, so that a lookup does not
/// run on a one-entry table.
const OTHER_CACHED_KEYS: u32 = 10_000;
/// Lifetime of the benchmark's cache entries: longer than the whole run.
const CACHE_TTL: Duration = Duration::from_secs(3600);

/// Everything a request on the hot path reads: configuration, a cached
/// identity and the key that resolves to it.
struct Fixture {
    config: Config,
    key_text: String,
    hash: KeyHash,
    identity: Arc<Identity>,
    cache: KeyCache,
    legacy_sunset: i64,
    tenant: HeaderValue,
}

impl Fixture {
    /// Builds the identity as the gateway does on a cache miss: an in-memory
    /// store with an enterprise organization, a personal access token of its
    /// Organization Admin, `Store::resolve_key`, then `resolve_identity`.
    fn new() -> Self {
        let config = Config::from_toml(CONFIG).expect("benchmark config is valid");

        let store = SqliteStore::in_memory().expect("in-memory store opens");
        let setup = store
            .setup("Acme", "Default", "a@b.c", "enterprise")
            .expect("store setup succeeds");
        let (_, secret) = store
            .create_key(&NewKey {
                kind: KeyKind::Personal,
                organization_id: setup.organization_id,
                user_id: Some(setup.user_id),
                service_account_id: None,
                workspace_id: None,
                description: "benchmark key".to_string(),
                expires_at: None,
            })
            .expect("key is created");
        let key_text = secret.expose().to_string();
        let hash = credential::parse_key(&key_text)
            .expect("generated key parses")
            .hash;

        // `SqliteStore::resolve_key` runs the query on tokio's blocking pool.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("tokio runtime starts");
        let (key, principal) = runtime
            .block_on(Store::resolve_key(&store, hash))
            .expect("store lookup succeeds")
            .expect("the new key is found");
        let identity = Arc::new(authz::resolve_identity(&key, &principal));
        assert_eq!(identity.workspaces.len(), 1, "one workspace is reachable");

        // The configured 30 s lifetime would expire the key partway through
        // the run, and every later lookup would measure a miss.
        let cache = KeyCache::new(&CacheConfig {
            capacity: config.cache.capacity,
            ttl: CACHE_TTL,
            negative_ttl: CACHE_TTL,
        });
        for i in 0..OTHER_CACHED_KEYS {
            cache.insert(KeyHash::of(&format!("other-key-{i}")), Cached::Unknown);
        }
        cache.insert(hash, Cached::Known(identity.clone()));

        let legacy_sunset = config
            .legacy_sunset
            .midnight()
            .assume_utc()
            .unix_timestamp();
        let tenant = identity.workspaces[0].workspace_header.clone();
        Self {
            config,
            key_text,
            hash,
            identity,
            cache,
            legacy_sunset,
            tenant,
        }
    }

    /// Headers a typical HTTP/1.1 SDK client sends with a JSON POST.
    fn client_headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let mut add = |name: HeaderName, value: &str| {
            headers.insert(name, HeaderValue::from_str(value).expect("valid value"));
        };
        add(header::HOST, "api.example.com");
        add(header::USER_AGENT, "langsmith-py/0.1.147");
        add(header::ACCEPT, "application/json");
        add(header::ACCEPT_ENCODING, "gzip, deflate");
        add(header::CONNECTION, "keep-alive");
        add(header::CONTENT_TYPE, "application/json");
        add(header::CONTENT_LENGTH, "1834");
        add(headers::API_KEY.clone(), &self.key_text);
        headers
    }
}

/// Runs the steps of one authenticated request on a cache hit and returns
/// the index of the chosen workspace grant.
fn handle_request(fixture: &Fixture, method: &Method, raw_path: &str, key_text: &str) -> usize {
    let path = canonicalize(raw_path).expect("path is valid");
    let rule = fixture
        .config
        .routes
        .find(method, &path)
        .expect("a rule matches");
    let Requirement::Permission(permission) = &rule.requirement else {
        panic!("the benchmarked rule requires a permission");
    };
    let parsed = credential::parse_key(key_text).expect("key parses");
    let identity = match fixture.cache.get(&parsed.hash) {
        Some(Cached::Known(identity)) if identity.kind == parsed.kind => identity,
        _ => panic!("the key is cached as known"),
    };
    let now = unix_now();
    let grant = authz::authorize(&identity, None, permission, now, fixture.legacy_sunset)
        .expect("the key may create runs");
    // The gateway notes each use. After the first call, this is one atomic load.
    black_box(identity.should_note_use(now, 60));
    grant
}

fn hot_path(c: &mut Criterion) {
    let fixture = Fixture::new();
    let now = unix_now();
    let mut group = c.benchmark_group("hot_path");

    group.bench_function("parse_key", |b| {
        b.iter(|| credential::parse_key(black_box(&fixture.key_text)))
    });
    // The SHA-256 of the whole key, one of the two digests `parse_key` computes.
    group.bench_function("key_hash", |b| {
        b.iter(|| KeyHash::of(black_box(&fixture.key_text)))
    });
    group.bench_function("canonicalize", |b| {
        b.iter(|| canonicalize(black_box(PATH)).map(|p| p.len()))
    });
    group.bench_function("canonicalize_rewrite", |b| {
        b.iter(|| canonicalize(black_box(PATH_TO_REWRITE)).map(|p| p.len()))
    });
    group.bench_function("route_find", |b| {
        b.iter(|| {
            fixture
                .config
                .routes
                .find(black_box(&Method::POST), black_box(PATH))
                .map(|rule| rule.upstream)
        })
    });
    group.bench_function("route_find_first", |b| {
        b.iter(|| {
            fixture
                .config
                .routes
                .find(black_box(&Method::GET), black_box(PATH_OF_FIRST_RULE))
                .map(|rule| rule.upstream)
        })
    });
    group.bench_function("route_find_miss", |b| {
        b.iter(|| {
            fixture
                .config
                .routes
                .find(black_box(&Method::GET), black_box(PATH_WITHOUT_ROUTE))
                .map(|rule| rule.upstream)
        })
    });
    group.bench_function("cache_get", |b| {
        b.iter(|| fixture.cache.get(black_box(&fixture.hash)))
    });
    group.bench_function("authorize", |b| {
        b.iter(|| {
            authz::authorize(
                black_box(&fixture.identity),
                None,
                black_box("runs:create"),
                now,
                fixture.legacy_sunset,
            )
        })
    });
    group.bench_function("authorize_tenant", |b| {
        b.iter(|| {
            authz::authorize(
                black_box(&fixture.identity),
                Some(black_box(&fixture.tenant)),
                black_box("runs:create"),
                now,
                fixture.legacy_sunset,
            )
        })
    });
    group.bench_function("full", |b| {
        b.iter(|| {
            handle_request(
                &fixture,
                black_box(&Method::POST),
                black_box(PATH),
                black_box(&fixture.key_text),
            )
        })
    });
    group.finish();
    assert!(
        matches!(fixture.cache.get(&fixture.hash), Some(Cached::Known(_))),
        "the benchmark key left the cache, so cache_get measured misses"
    );

    // Each iteration starts from a fresh copy of the client's headers. Making
    // the copy is setup, so it is not timed.
    let client_headers = fixture.client_headers();
    let names = &fixture.config.headers;
    let grant = &fixture.identity.workspaces[0];
    let client_ip = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));
    let mut group = c.benchmark_group("headers");

    group.bench_function("remove_hop_by_hop", |b| {
        b.iter_batched_ref(
            || client_headers.clone(),
            headers::remove_hop_by_hop,
            BatchSize::SmallInput,
        )
    });
    group.bench_function("remove_client_identity", |b| {
        b.iter_batched_ref(
            || client_headers.clone(),
            |headers| headers::remove_client_identity(headers, names, false),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("inject_identity", |b| {
        b.iter_batched_ref(
            || client_headers.clone(),
            |headers| headers::inject_identity(headers, names, &fixture.identity, grant),
            BatchSize::SmallInput,
        )
    });
    // The whole rewrite in the order `proxy::rewrite_headers` runs it for an
    // HTTP/1.1 upstream.
    group.bench_function("rewrite", |b| {
        b.iter_batched_ref(
            || client_headers.clone(),
            |headers| {
                let host = headers.get(header::HOST).cloned();
                headers::remove_hop_by_hop(headers);
                headers::remove_client_identity(headers, names, false);
                headers.remove(header::HOST);
                headers::append_forwarded(headers, client_ip, "http", host);
                headers::inject_identity(headers, names, &fixture.identity, grant);
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    targets = hot_path
}
criterion_main!(benches);
