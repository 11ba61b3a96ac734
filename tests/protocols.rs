//! Protocols clients use through the gateway: TLS with certificate reload,
//! HTTP/2 over TLS and cleartext, gRPC with trailers, and WebSocket.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use portcullis::config::Config;
use portcullis::credential::KeyKind;
use portcullis::server::Server;
use portcullis::store::SqliteStore;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::{self, Message};

/// A self-signed certificate for `localhost`, as PEM text and DER.
struct TestCert {
    cert_pem: String,
    key_pem: String,
    der: CertificateDer<'static>,
}

fn new_cert() -> TestCert {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    TestCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        der: cert.der().clone(),
    }
}

fn write_cert(dir: &Path, cert: &TestCert) {
    std::fs::write(dir.join("cert.pem"), &cert.cert_pem).unwrap();
    std::fs::write(dir.join("key.pem"), &cert.key_pem).unwrap();
}

fn client_tls(
    trusted: &[&CertificateDer<'static>],
    alpn: &[&[u8]],
    tls12_only: bool,
) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in trusted {
        roots.add((*cert).clone()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// A gateway with the given routes and upstreams, optionally over TLS.
struct Running {
    addr: SocketAddr,
    key: String,
    _dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(sections: &str, tls: Option<&TestCert>) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("p.db");
    let tls_section = match tls {
        Some(cert) => {
            write_cert(dir.path(), cert);
            format!(
                "[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
                dir.path().join("cert.pem").display(),
                dir.path().join("key.pem").display()
            )
        }
        None => String::new(),
    };
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n{tls_section}\n[metrics]\nlisten = \"127.0.0.1:0\"\n\
         [store]\nurl = \"sqlite://{}\"\nbootstrap = false\n{sections}",
        db.display()
    );
    let config = Config::from_toml(&text).unwrap();
    let store = SqliteStore::open(&db).unwrap();
    let setup = store
        .setup("Acme", "Default", "a@acme.test", "enterprise")
        .unwrap();
    let key = common::create_key(&store, KeyKind::Personal, setup.organization_id, |k| {
        k.user_id = Some(setup.user_id)
    });
    let server = Server::bind(config, Arc::new(store)).await.unwrap();
    let addr = server.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async {
        let _ = rx.await;
    }));
    Running {
        addr,
        key: key.expose().to_string(),
        _dir: dir,
        _stop: tx,
    }
}

fn recorder_routes(upstream: SocketAddr) -> String {
    format!(
        "[[upstreams]]\nname = \"recorder\"\nurl = \"http://{upstream}\"\n\
         [[routes]]\nid = \"info\"\npath = \"/api/v1/info\"\nmethods = [\"GET\"]\n\
         permission = \"public\"\nupstream = \"recorder\"\n\
         [[routes]]\nid = \"runs\"\npath = \"/api/v1/runs/**\"\nmethods = [\"GET\"]\n\
         permission = \"runs:read\"\nupstream = \"recorder\"\n"
    )
}

async fn tls_connect(
    addr: SocketAddr,
    config: rustls::ClientConfig,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await?;
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

#[tokio::test]
async fn tls_client_gets_through_with_http1_and_tls12() {
    let upstream = common::Upstream::start().await;
    let cert = new_cert();
    let gw = start(&recorder_routes(upstream.addr), Some(&cert)).await;

    for tls12_only in [false, true] {
        let config = client_tls(&[&cert.der], &[b"http/1.1"], tls12_only);
        let mut stream = tls_connect(gw.addr, config).await.unwrap();
        let request = format!(
            "GET /api/v1/runs/1 HTTP/1.1\r\nHost: localhost\r\nx-api-key: {}\r\nConnection: close\r\n\r\n",
            gw.key
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        let _ = stream.read_to_end(&mut raw).await;
        let response = common::http::parse_response(&raw).expect("a response");
        assert_eq!(response.status, 200, "{}", response.text());
        assert_eq!(
            upstream.last().value("x-forwarded-proto").as_deref(),
            Some("https")
        );
    }
}

#[tokio::test]
async fn new_certificate_is_served_after_reload() {
    let upstream = common::Upstream::start().await;
    let first = new_cert();
    let second = new_cert();
    let gw = start(&recorder_routes(upstream.addr), Some(&first)).await;
    let served = |cert: &TestCert| {
        let config = client_tls(&[&first.der, &second.der], &[b"http/1.1"], false);
        let expected = cert.der.clone();
        async move {
            let stream = tls_connect(gw.addr, config).await.unwrap();
            let peer = stream.get_ref().1.peer_certificates().unwrap()[0].clone();
            peer == expected
        }
    };
    assert!(served(&first).await);

    // The certificate files live next to the store in the gateway's dir.
    write_cert(gw._dir.path(), &second);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !served(&second).await {
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn h2_over_tls_and_h2c_pass() {
    let upstream = common::Upstream::start().await;
    let cert = new_cert();

    // HTTP/2 over TLS, chosen by ALPN.
    let gw = start(&recorder_routes(upstream.addr), Some(&cert)).await;
    let stream = tls_connect(gw.addr, client_tls(&[&cert.der], &[b"h2"], false))
        .await
        .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = http::Request::builder()
        .uri(format!(
            "https://localhost:{}/api/v1/runs/7",
            gw.addr.port()
        ))
        .header("x-api-key", &gw.key)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(upstream.last().target, "/api/v1/runs/7");

    // Cleartext HTTP/2 with prior knowledge.
    let plain = start(&recorder_routes(upstream.addr), None).await;
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Empty<Bytes>>();
    let request = http::Request::builder()
        .uri(format!("http://{}/api/v1/runs/8", plain.addr))
        .header("x-api-key", &plain.key)
        .body(Empty::new())
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), http::Version::HTTP_2);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(!body.is_empty());
    assert_eq!(upstream.last().target, "/api/v1/runs/8");
}

/// Starts a tonic gRPC server with the standard health service.
async fn start_grpc() -> SocketAddr {
    let (mut reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("portcullis.test", tonic_health::ServingStatus::Serving)
        .await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    addr
}

// tonic's interceptors return `Result<_, tonic::Status>`, a large error
// type this test does not choose.
#[allow(clippy::result_large_err)]
#[tokio::test]
async fn grpc_call_passes_with_trailers() {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;

    let grpc = start_grpc().await;
    let gw = start(
        &format!(
            "[[upstreams]]\nname = \"grpc\"\nurl = \"http://{grpc}\"\nprotocol = \"http2\"\n\
             [[routes]]\nid = \"health\"\npath = \"/grpc.health.v1.Health/**\"\nmethods = [\"POST\"]\n\
             permission = \"runs:read\"\nupstream = \"grpc\"\n"
        ),
        None,
    )
    .await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", gw.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();

    let key: tonic::metadata::MetadataValue<_> = gw.key.parse().unwrap();
    let mut client =
        HealthClient::with_interceptor(channel.clone(), move |mut request: tonic::Request<()>| {
            request.metadata_mut().insert("x-api-key", key.clone());
            Ok(request)
        });
    // The status travels in the trailers; tonic fails the call without them.
    let response = client
        .check(HealthCheckRequest {
            service: "portcullis.test".into(),
        })
        .await
        .unwrap();
    assert_eq!(response.into_inner().status, 1, "SERVING");

    // An unknown service is answered by grpc-status NOT_FOUND in trailers.
    let missing = client
        .check(HealthCheckRequest {
            service: "no.such.service".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);

    // Without a key the gateway answers in gRPC terms: UNAUTHENTICATED,
    // with the error code in the message.
    let mut anonymous = HealthClient::new(channel);
    let denied = anonymous
        .check(HealthCheckRequest {
            service: "portcullis.test".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), tonic::Code::Unauthenticated);
    assert!(
        denied.message().starts_with("missing_api_key"),
        "{}",
        denied.message()
    );
}

/// Starts a WebSocket server that echoes every message.
async fn start_websocket_echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(message)) = socket.next().await {
                    if message.is_text() || message.is_binary() {
                        let _ = socket.send(message).await;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn websocket_echo_works_after_auth_and_is_refused_without_key() {
    let echo = start_websocket_echo().await;
    let gw = start(
        &format!(
            "[[upstreams]]\nname = \"ws\"\nurl = \"http://{echo}\"\n\
             [[routes]]\nid = \"ws\"\npath = \"/ws\"\nmethods = [\"GET\"]\n\
             permission = \"runs:read\"\nupstream = \"ws\"\n"
        ),
        None,
    )
    .await;
    let url = format!("ws://{}/ws", gw.addr);

    let mut request =
        tungstenite::client::IntoClientRequest::into_client_request(url.as_str()).unwrap();
    request
        .headers_mut()
        .insert("x-api-key", gw.key.parse().unwrap());
    let stream = TcpStream::connect(gw.addr).await.unwrap();
    let (mut socket, response) = tokio_tungstenite::client_async(request, stream)
        .await
        .unwrap();
    assert_eq!(response.status(), 101);
    socket
        .send(Message::text("hello through the gateway"))
        .await
        .unwrap();
    let echoed = socket.next().await.unwrap().unwrap();
    assert_eq!(echoed, Message::text("hello through the gateway"));
    socket
        .send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    assert_eq!(
        socket.next().await.unwrap().unwrap(),
        Message::binary(vec![0u8, 1, 2, 255])
    );
    socket.close(None).await.unwrap();

    let stream = TcpStream::connect(gw.addr).await.unwrap();
    let refused = tokio_tungstenite::client_async(url.as_str(), stream).await;
    match refused {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("expected a 401, got {other:?}"),
    }
}

/// A CA and a certificate it signed, as PEM.
struct SignedCert {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
    ca_der: CertificateDer<'static>,
}

fn ca_signed(name: &str) -> SignedCert {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("{name} test CA"));
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    SignedCert {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        ca_der: ca.der().clone(),
    }
}

/// Starts an HTTPS upstream that requires a client certificate signed by
/// `client_ca`, and answers 200 with the path it received.
async fn start_https_upstream(
    server: &SignedCert,
    client_ca: &CertificateDer<'static>,
) -> SocketAddr {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(client_ca.clone()).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let certs = rustls_pemfile::certs(&mut server.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls_pemfile::private_key(&mut server.key_pem.as_bytes())
        .unwrap()
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let service = hyper::service::service_fn(
                    |request: http::Request<hyper::body::Incoming>| async move {
                        let body = format!("tls upstream saw {}", request.uri().path());
                        Ok::<_, std::convert::Infallible>(http::Response::new(
                            http_body_util::Full::new(Bytes::from(body)),
                        ))
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn https_upstream_with_configured_ca_and_client_certificate() {
    let server = ca_signed("localhost");
    let client = ca_signed("portcullis-gateway");
    let upstream = start_https_upstream(&server, &client.ca_der).await;
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let ca = path("server-ca.pem", &server.ca_pem);
    let cert = path("client.pem", &client.cert_pem);
    let key = path("client-key.pem", &client.key_pem);
    let route = "[[routes]]\nid = \"secure\"\npath = \"/secure/**\"\nmethods = [\"GET\"]\n\
                 permission = \"public\"\nupstream = \"secure\"\n";

    let gw = start(
        &format!(
            "[[upstreams]]\nname = \"secure\"\nurl = \"https://localhost:{port}\"\n\
             ca = \"{ca}\"\nclient_cert = \"{cert}\"\nclient_key = \"{key}\"\n{route}",
            port = upstream.port()
        ),
        None,
    )
    .await;
    let response = common::send(gw.addr, "GET", "/secure/data", &[], b"").await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.text(), "tls upstream saw /secure/data");

    // Without the client certificate the upstream refuses the handshake.
    let without_cert = start(
        &format!(
            "[[upstreams]]\nname = \"secure\"\nurl = \"https://localhost:{port}\"\nca = \"{ca}\"\n{route}",
            port = upstream.port()
        ),
        None,
    )
    .await;
    let response = common::send(without_cert.addr, "GET", "/secure/data", &[], b"").await;
    assert_eq!(response.status, 502);

    // Without the CA, the system roots do not trust the test certificate.
    let system_roots = start(
        &format!(
            "[[upstreams]]\nname = \"secure\"\nurl = \"https://localhost:{port}\"\n\
             client_cert = \"{cert}\"\nclient_key = \"{key}\"\n{route}",
            port = upstream.port()
        ),
        None,
    )
    .await;
    let response = common::send(system_roots.addr, "GET", "/secure/data", &[], b"").await;
    assert_eq!(response.status, 502);
}

#[tokio::test]
async fn bytes_after_refused_upgrade_are_judged_as_requests() {
    // The recording upstream answers 200, not 101, to an upgrade request.
    let upstream = common::Upstream::start().await;
    let gw = start(&recorder_routes(upstream.addr), None).await;
    let raw = format!(
        "GET /api/v1/runs/ws HTTP/1.1\r\nHost: gw\r\nx-api-key: {}\r\n\
         Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n\
         GET /api/v1/runs/smuggled HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n",
        gw.key
    );
    let bytes = common::send_raw(gw.addr, raw.as_bytes()).await;
    let text = String::from_utf8_lossy(&bytes);
    // Bodies end without a newline, so status lines are found by content.
    let statuses: Vec<&str> = text
        .match_indices("HTTP/1.1 ")
        .map(|(at, _)| &text[at..at + 12])
        .collect();
    assert_eq!(statuses.len(), 2, "{text}");
    assert!(statuses[0].starts_with("HTTP/1.1 200"), "{text}");
    // The second request carries no key, so it is rejected on its own.
    assert!(statuses[1].starts_with("HTTP/1.1 401"), "{text}");
    let targets: Vec<String> = upstream.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(targets, vec!["/api/v1/runs/ws".to_string()]);
}
