//! The `portcullis` binary as an operator runs it: config checks, init,
//! first start on the shipped config, and a large upload through real
//! processes.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

/// A child process killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// Waits until something accepts connections on `addr`.
fn wait_for_listener(addr: SocketAddr, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(addr).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("process exited with {status} before listening on {addr}");
        }
        assert!(Instant::now() < deadline, "nothing listened on {addr}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn shipped_config_on(dir: &Path, listen: SocketAddr) -> std::path::PathBuf {
    let text = std::fs::read_to_string("config/portcullis.toml").unwrap();
    assert!(text.contains("listen = \"127.0.0.1:8080\""));
    let text = text.replace(
        "listen = \"127.0.0.1:8080\"",
        &format!("listen = \"{listen}\""),
    );
    assert!(text.contains("listen = \"127.0.0.1:9090\""));
    let text = text.replace("listen = \"127.0.0.1:9090\"", "listen = \"127.0.0.1:0\"");
    assert!(text.contains("listen = \"127.0.0.1:8081\""));
    let text = text.replace("listen = \"127.0.0.1:8081\"", "listen = \"127.0.0.1:0\"");
    let path = dir.join("portcullis.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn check_config_accepts_shipped_file() {
    let output = Command::new(BIN)
        .args(["check-config", "--config", "config/portcullis.toml"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn check_config_names_field_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[[upstreams]]\nname = \"api\"\nurl = \"http://127.0.0.1:1\"\n\n[[routes]]\nid = \"r\"\n\
         path = \"/x\"\nmethods = [\"GET\"]\npermission = \"runs:read\"\nupstream = \"nope\"\n",
    )
    .unwrap();
    let output = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("line 10"), "{stderr}");
    assert!(stderr.contains("routes[0].upstream"), "{stderr}");
}

#[test]
fn init_prints_ids_and_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = shipped_config_on(dir.path(), free_port());
    let run = || {
        Command::new(BIN)
            .current_dir(dir.path())
            .args(["init", "--json", "--config"])
            .arg(&config)
            .output()
            .unwrap()
    };
    let output = run();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    for field in ["organization_id", "workspace_id", "user_id", "key_id"] {
        let id = value[field].as_str().unwrap();
        assert!(uuid::Uuid::try_parse(id).is_ok(), "{field} = {id}");
    }
    let key = value["api_key"].as_str().unwrap();
    assert!(portcullis::credential::parse_key(key).is_ok());
    assert!(dir.path().join("portcullis.db").exists());
    // The key is not in the store, and a second init refuses to run.
    let db = std::fs::read(dir.path().join("portcullis.db")).unwrap();
    assert!(!db.windows(key.len()).any(|w| w == key.as_bytes()));
    assert!(!run().status.success());
}

#[tokio::test]
async fn first_start_on_shipped_config_serves_echo_with_identity() {
    let dir = tempfile::tempdir().unwrap();
    let listen = free_port();
    let config = shipped_config_on(dir.path(), listen);
    let mut child = Command::new(BIN)
        .current_dir(dir.path())
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut process = Process(child);
    let mut lines = BufReader::new(stdout).lines();
    let key = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|line| {
            line.trim()
                .strip_prefix("lsv2_pt_")
                .map(|rest| format!("lsv2_pt_{rest}"))
        })
        .expect("the first key is printed");
    // Keep reading, as a terminal would, so the gateway's later output
    // never meets a closed pipe.
    std::thread::spawn(move || lines.for_each(drop));
    wait_for_listener(listen, &mut process.0);

    let response = common::send(listen, "GET", "/echo/hello", &[("x-api-key", &key)], b"").await;
    assert_eq!(response.status, 200, "{}", response.text());
    let echo = response.json();
    assert_eq!(echo["path"], "/echo/hello");
    assert!(echo["headers"]["x-auth-user-id"].is_string());
    assert_eq!(echo["headers"]["x-auth-role"], "WORKSPACE_ADMIN");
    assert!(echo["headers"].get("x-api-key").is_none());

    let denied = common::send(listen, "GET", "/echo/hello", &[], b"").await;
    assert_eq!(denied.status, 401);
}

/// Peak resident memory of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc status")
}

#[tokio::test]
async fn one_gibibyte_upload_streams_in_bounded_memory() {
    const SIZE: u64 = 1 << 30;
    const MAX_PEAK_KIB: u64 = 64 * 1024;

    let dir = tempfile::tempdir().unwrap();
    let echo_addr = free_port();
    let mut echo = Process(
        Command::new(BIN)
            .args(["echo", "--listen", &echo_addr.to_string()])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_listener(echo_addr, &mut echo.0);

    let listen = free_port();
    let config = dir.path().join("gw.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"{listen}\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n[store]\nurl = \"sqlite://{db}\"\nbootstrap = false\n\
             [[upstreams]]\nname = \"echo\"\nurl = \"http://{echo_addr}\"\n\
             [[routes]]\nid = \"upload\"\npath = \"/upload\"\nmethods = [\"POST\"]\n\
             permission = \"datasets:create\"\nupstream = \"echo\"\n",
            db = dir.path().join("p.db").display()
        ),
    )
    .unwrap();
    let init = Command::new(BIN)
        .args(["init", "--json", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(init.status.success());
    let key = serde_json::from_slice::<serde_json::Value>(&init.stdout).unwrap()["api_key"]
        .as_str()
        .unwrap()
        .to_string();
    let mut gateway = Process(
        Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_listener(listen, &mut gateway.0);

    let mut stream = tokio::net::TcpStream::connect(listen).await.unwrap();
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: gw\r\nx-api-key: {key}\r\nContent-Length: {SIZE}\r\n\
         Connection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b'x'; 256 * 1024];
    let mut sent = 0u64;
    while sent < SIZE {
        stream.write_all(&chunk).await.unwrap();
        sent += chunk.len() as u64;
    }
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let response = common::http::parse_response(&raw).expect("a response");
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["body_bytes"], SIZE);

    let peak = peak_rss_kib(gateway.0.id());
    assert!(
        peak < MAX_PEAK_KIB,
        "gateway peak RSS {peak} KiB for a {SIZE}-byte upload"
    );
}

#[tokio::test]
async fn sigterm_lets_in_flight_request_finish() {
    // The recording upstream holds requests under /slow for 3 s.
    let upstream = common::Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let listen = free_port();
    let config = dir.path().join("gw.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"{listen}\"\n[metrics]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\n\
             [store]\nurl = \"sqlite://{db}\"\nbootstrap = false\n\
             [[upstreams]]\nname = \"slow\"\nurl = \"http://{up}\"\ntimeout = \"30s\"\n\
             [[routes]]\nid = \"slow\"\npath = \"/slow/**\"\nmethods = [\"GET\"]\n\
             permission = \"public\"\nupstream = \"slow\"\n",
            db = dir.path().join("p.db").display(),
            up = upstream.addr,
        ),
    )
    .unwrap();
    let mut gateway = Process(
        Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_listener(listen, &mut gateway.0);

    let request = tokio::spawn(common::send(listen, "GET", "/slow/job", &[], b""));
    let deadline = Instant::now() + Duration::from_secs(10);
    while upstream.count() == 0 {
        assert!(
            Instant::now() < deadline,
            "the request never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let killed = Command::new("kill")
        .args(["-TERM", &gateway.0.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());

    let response = request.await.unwrap();
    assert_eq!(response.status, 200, "{}", response.text());
    let status = gateway.0.wait().unwrap();
    assert!(status.success(), "the gateway exited with {status}");
    // New connections are refused once it has stopped.
    assert!(std::net::TcpStream::connect(listen).is_err());
}
