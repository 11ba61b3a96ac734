//! No log line carries a secret. Every kind of request goes through a real
//! gateway, over HTTP/1.1 and HTTP/2, while a global subscriber records all
//! events at TRACE level, including those of hyper_util and h2. Then the test
//! searches the recorded text for every key it used.
//!
//! hyper itself is built here without its optional `tracing` dependency (see
//! Cargo.lock), so it emits no events. Its HTTP/2 layer, h2, does.
//!
//! This file holds one test, because the subscriber is global to the process
//! and can be installed only once.

mod common;

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::{send, send_raw, TestGateway};
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use portcullis::authz::{ORGANIZATION_USER, WORKSPACE_EDITOR};
use portcullis::credential::{parse_key, KeyKind, SecretKey};
use portcullis::store::unix_now;
use tokio::net::TcpStream;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// Characters of a key that may be shown, such as `lsv2_pt_1a2b`.
const DISPLAY_PREFIX_LEN: usize = 12;
/// Length of the runs of secret characters searched for. A shorter run of
/// hex digits could appear in a log line by chance, for example inside a
/// UUID.
const LEAK_WINDOW_LEN: usize = 16;

/// A request header: name and value.
type Header<'a> = (&'a str, &'a str);

/// A `MakeWriter` that appends every formatted event to a shared buffer.
#[derive(Clone, Default)]
struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl CapturedLogs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl io::Write for CapturedLogs {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for CapturedLogs {
    type Writer = CapturedLogs;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// A key sent in some request, named for failure messages.
struct Secret {
    label: &'static str,
    text: String,
}

impl Secret {
    fn new(label: &'static str, text: &str) -> Self {
        Self {
            label,
            text: text.to_string(),
        }
    }

    /// Returns the random part: after the prefix, and before the checksum of a
    /// v2 key.
    fn random_part(&self) -> &str {
        let text = self.text.as_str();
        if let Some(body) = text.strip_prefix("ls__") {
            return body;
        }
        let body = &text["lsv2_pt_".len()..];
        body.split('_').next().unwrap_or(body)
    }
}

/// Sends `GET path` over HTTP/2 with prior knowledge and returns the status.
async fn http2_get(addr: SocketAddr, path: &str, headers: &[Header<'_>]) -> u16 {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("HTTP/2 handshake");
    tokio::spawn(connection);
    let mut request = http::Request::get(format!("http://{addr}{path}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Empty::<Bytes>::new()).expect("request");
    let response = sender.send_request(request).await.expect("HTTP/2 response");
    response.status().as_u16()
}

/// Returns the first captured line that contains `needle`.
fn line_containing<'a>(logs: &'a str, needle: &str) -> Option<&'a str> {
    logs.lines().find(|line| line.contains(needle))
}

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_in_any_log_line() {
    let logs = CapturedLogs::default();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new("trace"))
        .with_writer(logs.clone())
        .with_ansi(false)
        .init();

    let gw = TestGateway::start().await;
    let admin_key = gw.admin_key.expose().to_string();
    let account = gw
        .store
        .create_service_account(gw.org, "ingest", ORGANIZATION_USER)
        .unwrap();
    gw.store
        .add_service_account_workspace(account, gw.workspace, WORKSPACE_EDITOR)
        .unwrap();
    let service = gw.key(KeyKind::Service, |k| k.service_account_id = Some(account));
    let legacy = gw.key(KeyKind::Legacy, |k| k.workspace_id = Some(gw.workspace));
    let expired = gw.key(KeyKind::Personal, |k| {
        k.user_id = Some(gw.admin);
        k.expires_at = Some(unix_now() - 1);
    });
    let revoked = gw.key(KeyKind::Personal, |k| k.user_id = Some(gw.admin));
    let revoked_id = gw
        .store
        .list_keys(gw.org)
        .unwrap()
        .into_iter()
        .find(|k| k.display_prefix == revoked.display_prefix())
        .unwrap()
        .id;
    assert!(gw.store.revoke_key(revoked_id).unwrap());
    let second = gw.key(KeyKind::Personal, |k| k.user_id = Some(gw.admin));
    let unknown = SecretKey::generate(KeyKind::Personal);
    let non_utf8 = SecretKey::generate(KeyKind::Service);
    let mut mistyped = admin_key.clone();
    let last = mistyped.pop().unwrap();
    mistyped.push(if last == '0' { '1' } else { '0' });

    let secrets = [
        Secret::new("personal access token", &admin_key),
        Secret::new("service key", service.expose()),
        Secret::new("legacy key", legacy.expose()),
        Secret::new("expired key", expired.expose()),
        Secret::new("revoked key", revoked.expose()),
        Secret::new("second key", second.expose()),
        Secret::new("unknown key", unknown.expose()),
        Secret::new("key sent with non-UTF-8 bytes", non_utf8.expose()),
        Secret::new("mistyped key", &mistyped),
    ];

    let bearer = format!("Bearer {admin_key}");
    let bearer_second = format!("Bearer {}", second.expose());
    // (path, headers, expected status) of every request sent with `send`.
    let requests: Vec<(&str, Vec<Header<'_>>, u16)> = vec![
        ("/api/v1/runs/1", vec![("x-api-key", &admin_key)], 200),
        ("/api/v1/runs/1", vec![("Authorization", &bearer)], 200),
        ("/api/v1/runs", vec![("x-api-key", service.expose())], 200),
        ("/api/v1/runs", vec![("x-api-key", legacy.expose())], 401),
        ("/api/v1/runs", vec![("x-api-key", &mistyped)], 401),
        ("/api/v1/runs", vec![("x-api-key", unknown.expose())], 401),
        ("/api/v1/runs", vec![("x-api-key", expired.expose())], 401),
        ("/api/v1/runs", vec![("x-api-key", revoked.expose())], 401),
        (
            "/api/v1/runs",
            vec![("x-api-key", &admin_key), ("Authorization", &bearer_second)],
            400,
        ),
        ("/api/v1/info", vec![("x-api-key", &admin_key)], 200),
        ("/api/v1/info", vec![], 200),
        ("/down/x", vec![("x-api-key", &admin_key)], 502),
        ("/slow/x", vec![("Authorization", &bearer)], 504),
    ];
    for (path, headers, expected) in &requests {
        let response = send(gw.addr, "GET", path, headers, b"").await;
        let labels: Vec<&str> = headers.iter().map(|(name, _)| *name).collect();
        assert_eq!(
            response.status,
            *expected,
            "GET {path} with {labels:?}: {}",
            response.text()
        );
    }

    // A valid key with a byte that is not UTF-8 after its display prefix, so
    // that the rest of the key would show if the header value were logged.
    let (shown, rest) = non_utf8.expose().split_at(DISPLAY_PREFIX_LEN);
    let mut raw =
        b"GET /api/v1/runs HTTP/1.1\r\nHost: gw\r\nConnection: close\r\nx-api-key: ".to_vec();
    raw.extend_from_slice(shown.as_bytes());
    raw.push(0xff);
    raw.extend_from_slice(rest.as_bytes());
    raw.extend_from_slice(b"\r\n\r\n");
    let response = common::http::parse_response(&send_raw(gw.addr, &raw).await)
        .expect("a response to the non-UTF-8 key");
    assert_eq!(response.status, 401, "{}", response.text());

    let http2_requests: [(&str, &str, u16); 3] = [
        ("x-api-key", &admin_key, 200),
        ("authorization", &bearer, 200),
        ("x-api-key", unknown.expose(), 401),
    ];
    for (name, value, expected) in http2_requests {
        let status = http2_get(gw.addr, "/api/v1/runs/1", &[(name, value)]).await;
        assert_eq!(
            status, expected,
            "GET /api/v1/runs/1 over HTTP/2 with {name}"
        );
    }
    let request_count = requests.len() + 1 + http2_requests.len();

    let keys = [
        &gw.admin_key,
        &service,
        &legacy,
        &expired,
        &revoked,
        &second,
        &unknown,
        &non_utf8,
    ];
    for key in keys {
        let parsed = parse_key(key.expose()).expect("the key parses");
        tracing::info!(secret = ?key, ?parsed, "debug output of a key");
    }

    gw.stop().await;
    let text = logs.text();

    assert!(!text.is_empty(), "no log line was captured");
    let access_lines = text
        .lines()
        .filter(|line| line.contains("portcullis::access"))
        .count();
    assert!(
        access_lines >= request_count,
        "{access_lines} access-log lines for {request_count} requests"
    );
    assert!(
        text.contains("hyper_util"),
        "no hyper_util event was captured, so TRACE did not reach dependencies"
    );
    assert!(
        text.contains("h2::"),
        "no h2 event was captured, so HTTP/2 headers were never traced"
    );

    for secret in &secrets {
        let label = secret.label;
        let key = secret.text.as_str();
        assert!(
            line_containing(&text, key).is_none(),
            "the whole {label} was logged: {:?}",
            line_containing(&text, key)
        );
        let random = secret.random_part();
        assert!(
            line_containing(&text, random).is_none(),
            "the random part of the {label} was logged: {:?}",
            line_containing(&text, random)
        );
        // The display prefix plus one more character: any longer prefix of
        // the key that was logged contains this.
        let past_prefix = &key[..DISPLAY_PREFIX_LEN + 1];
        assert!(
            line_containing(&text, past_prefix).is_none(),
            "more than the display prefix of the {label} was logged: {:?}",
            line_containing(&text, past_prefix)
        );
        let hidden = &key[DISPLAY_PREFIX_LEN..];
        for start in 0..=hidden.len() - LEAK_WINDOW_LEN {
            let window = &hidden[start..start + LEAK_WINDOW_LEN];
            assert!(
                line_containing(&text, window).is_none(),
                "characters {}..{} of the {label} were logged: {:?}",
                DISPLAY_PREFIX_LEN + start,
                DISPLAY_PREFIX_LEN + start + LEAK_WINDOW_LEN,
                line_containing(&text, window)
            );
        }
    }
}
