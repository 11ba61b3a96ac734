//! Criterion benchmarks of the limits on the request hot path: the work
//! `Gateway::process` adds to a request whose key is already cached.
//!
//! `limits/request_default` is the whole addition with the shipped limits
//! (a per-key rate limit) on a route that also counts traces: the
//! failed-authentication check and `admit`. The other benchmarks take it
//! apart or turn on every scope.
//!
//! Run with `cargo bench --bench limits`; it takes about 30 seconds after
//! the build.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use portcullis::config::Config;
use portcullis::error::Rejection;
use portcullis::identity::{EffectiveRole, RetentionTier, WorkspaceGrant};
use portcullis::limits::{Caller, Limits, LimitsConfig, SystemClock};
use portcullis::routing::Rule;
use portcullis::store::SqliteStore;
use uuid::Uuid;

/// Rate limits high enough that no benchmark iteration is ever rejected,
/// so that every iteration measures the admitted path.
const HIGH: u32 = 1_000_000_000;
/// Client addresses the throttle tracks besides the benchmarked one.
const OTHER_ADDRESSES: u32 = 10_000;

fn config(rate: &str) -> Config {
    let text = format!(
        r#"
[store]
url = "sqlite://unused-by-the-benchmark.db"

[[upstreams]]
name = "api"
url = "http://127.0.0.1:1984"

[[routes]]
id = "runs-read"
path = "/api/v1/runs/**"
methods = ["GET"]
permission = "runs:read"
upstream = "api"

[[routes]]
id = "runs-create"
path = "/api/v1/runs/**"
methods = ["POST"]
permission = "runs:create"
upstream = "api"
usage = "traces"

[limits.rate]
period = "1s"
{rate}
"#
    );
    Config::from_toml(&text).expect("benchmark config is valid")
}

struct Fixture {
    config: Config,
    limits: Limits,
    grant: WorkspaceGrant,
    key_id: Uuid,
    client: IpAddr,
}

impl Fixture {
    fn new(rate: &str) -> Self {
        let config = config(rate);
        let store = Arc::new(SqliteStore::in_memory().expect("in-memory store opens"));
        let limits = Limits::new(&config.request_limits, store, Arc::new(SystemClock::new()));
        let role = Arc::new(EffectiveRole::new(
            "WORKSPACE_ADMIN",
            vec!["runs:create".into(), "runs:read".into()],
        ));
        let fixture = Self {
            grant: WorkspaceGrant::new(Uuid::new_v4(), RetentionTier::Extended, role),
            key_id: Uuid::new_v4(),
            client: IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)),
            config,
            limits,
        };
        // Other callers' buckets, so that lookups do not run on a tiny table.
        let rule = fixture.rule("runs-read");
        for i in 0..OTHER_ADDRESSES {
            let grant = &fixture.grant;
            let caller = Caller {
                key_id: Uuid::new_v4(),
                grant,
            };
            let client = IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + i));
            let _ =
                fixture
                    .limits
                    .admit(&fixture.config.request_limits, rule, Some(caller), client);
        }
        fixture
    }

    fn rule(&self, id: &str) -> &Rule {
        self.config
            .routes
            .rules()
            .iter()
            .find(|rule| &*rule.id == id)
            .expect("the rule exists")
    }

    fn caller(&self) -> Caller<'_> {
        Caller {
            key_id: self.key_id,
            grant: &self.grant,
        }
    }

    fn limits_config(&self) -> &LimitsConfig {
        &self.config.request_limits
    }
}

fn limits(c: &mut Criterion) {
    let key_only = Fixture::new(&format!("per_key = {HIGH}"));
    let every_scope = Fixture::new(&format!(
        "per_key = {HIGH}\nper_workspace = {HIGH}\nper_route = {HIGH}\nper_client = {HIGH}"
    ));
    let none = Fixture::new("per_key = 0");
    let mut group = c.benchmark_group("limits");

    group.bench_function("admit_off", |b| {
        let rule = none.rule("runs-read");
        b.iter(|| {
            none.limits.admit(
                none.limits_config(),
                black_box(rule),
                Some(none.caller()),
                black_box(none.client),
            )
        })
    });
    group.bench_function("admit_key", |b| {
        let rule = key_only.rule("runs-read");
        b.iter(|| {
            key_only.limits.admit(
                key_only.limits_config(),
                black_box(rule),
                Some(key_only.caller()),
                black_box(key_only.client),
            )
        })
    });
    group.bench_function("admit_every_scope", |b| {
        let rule = every_scope.rule("runs-read");
        b.iter(|| {
            every_scope.limits.admit(
                every_scope.limits_config(),
                black_box(rule),
                Some(every_scope.caller()),
                black_box(every_scope.client),
            )
        })
    });
    group.bench_function("admit_key_and_usage", |b| {
        let rule = key_only.rule("runs-create");
        b.iter(|| {
            key_only.limits.admit(
                key_only.limits_config(),
                black_box(rule),
                Some(key_only.caller()),
                black_box(key_only.client),
            )
        })
    });
    group.bench_function("auth_throttle_check", |b| {
        b.iter(|| {
            key_only
                .limits
                .check_auth_throttle(key_only.limits_config(), black_box(key_only.client))
        })
    });
    // Everything the gateway adds to a cached-key request with the shipped
    // defaults, on a route that counts traces. `note_auth_result` is left
    // out: for an accepted key it is one pattern match, and benchmarks
    // cannot build the `Access` it takes.
    group.bench_function("request_default", |b| {
        let rule = key_only.rule("runs-create");
        let config = key_only.limits_config();
        b.iter(|| -> Result<(), Rejection> {
            let client = black_box(key_only.client);
            key_only.limits.check_auth_throttle(config, client)?;
            key_only
                .limits
                .admit(config, black_box(rule), Some(key_only.caller()), client)
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    targets = limits
}
criterion_main!(benches);
