//! Measures the memory of the per-client rate limit and the
//! failed-authentication throttle under a flood of distinct client
//! addresses, to show that it stays bounded by `max_buckets` and
//! `max_addresses`.
//!
//! Run with `cargo run --release --example limits_memory [ADDRESSES]`
//! (1,000,000 by default). It prints the resident set size (`VmRSS`) and
//! its peak (`VmHWM`) from `/proc/self/status`, so it needs Linux.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use portcullis::config::Config;
use portcullis::error::Rejection;
use portcullis::limits::{Limits, SystemClock};
use portcullis::store::SqliteStore;

const CONFIG: &str = r#"
[store]
url = "sqlite://unused-by-the-measurement.db"

[[upstreams]]
name = "api"
url = "http://127.0.0.1:1984"

[[routes]]
id = "info"
path = "/api/v1/info"
methods = ["GET"]
permission = "public"
upstream = "api"

[limits.rate]
per_client = 100
period = "1m"
"#;

fn main() {
    let addresses: u32 = std::env::args()
        .nth(1)
        .map(|n| n.parse().expect("ADDRESSES must be a number"))
        .unwrap_or(1_000_000);
    let config = Config::from_toml(CONFIG).expect("measurement config is valid");
    let settings = &config.request_limits;
    let store = Arc::new(SqliteStore::in_memory().expect("in-memory store opens"));
    let limits = Limits::new(settings, store, Arc::new(SystemClock::new()));
    let rule = &config.routes.rules()[0];
    println!(
        "max_buckets {}, max_addresses {}",
        settings.max_buckets, settings.max_addresses
    );
    report("start", 0, &limits);

    let step = (addresses / 10).max(1);
    for i in 0..addresses {
        let client = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
        limits
            .admit(settings, rule, None, client)
            .expect("a new address has a full bucket");
        if (i + 1) % step == 0 {
            limits.run_pending_tasks();
            report("per-client rate limit", i + 1, &limits);
        }
    }

    for i in 0..addresses {
        let client = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
        let _ = limits.note_auth_result(settings, client, Err(Rejection::InvalidKey));
        if (i + 1) % step == 0 {
            report("failed-auth throttle", i + 1, &limits);
        }
    }
}

fn report(phase: &str, addresses: u32, limits: &Limits) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<u64>().ok())
            .map_or_else(
                || "?".to_string(),
                |kb| format!("{:.1} MiB", kb as f64 / 1024.0),
            )
    };
    println!(
        "{phase:>22}: {addresses:>8} addresses, {:>6} buckets, {:>6} throttled, RSS {}, peak {}",
        limits.rate_buckets(),
        limits.throttled_addresses(),
        field("VmRSS:"),
        field("VmHWM:"),
    );
}
