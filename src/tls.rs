//! TLS with rustls: the listener's certificate (reloaded when its files
//! change) and the client configuration for HTTPS upstreams.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};

/// How often certificate files are checked for changes.
const CERT_WATCH_INTERVAL: Duration = Duration::from_secs(2);

/// A TLS setup failure, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no PEM private key")]
    NoKey { path: PathBuf },
    #[error("the private key in {path} is not usable: {detail}")]
    BadKey { path: PathBuf, detail: String },
    #[error("invalid TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|source| TlsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|source| TlsError::Read {
            path: path.to_path_buf(),
            source,
        })?
        .ok_or_else(|| TlsError::NoKey {
            path: path.to_path_buf(),
        })
}

fn certified_key(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let chain = certificates(cert)?;
    let key_der = private_key(key)?;
    let signing_key = provider()
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| TlsError::BadKey {
            path: key.to_path_buf(),
            detail: e.to_string(),
        })?;
    Ok(CertifiedKey::new(chain, signing_key))
}

/// The listener's certificate, swapped in place when its files change.
#[derive(Debug)]
pub struct CertificateSource {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: ArcSwap<CertifiedKey>,
}

impl CertificateSource {
    /// Loads the certificate chain and private key from PEM files.
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<Self, TlsError> {
        let key = certified_key(cert_path, key_path)?;
        Ok(Self {
            cert_path: cert_path.to_path_buf(),
            key_path: key_path.to_path_buf(),
            current: ArcSwap::from_pointee(key),
        })
    }

    /// Reads the files again; on failure the current certificate stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let key = certified_key(&self.cert_path, &self.key_path)?;
        self.current.store(Arc::new(key));
        Ok(())
    }

    fn digest(&self) -> Option<[u8; 32]> {
        let mut hasher = Sha256::new();
        hasher.update(std::fs::read(&self.cert_path).ok()?);
        hasher.update(std::fs::read(&self.key_path).ok()?);
        Some(hasher.finalize().into())
    }

    /// Reloads the certificate whenever its files change, until the task
    /// is dropped.
    pub async fn watch(self: Arc<Self>) {
        let mut last = self.digest();
        let mut interval = tokio::time::interval(CERT_WATCH_INTERVAL);
        loop {
            interval.tick().await;
            let current = self.digest();
            if current.is_none() || current == last {
                continue;
            }
            last = current;
            match self.reload() {
                Ok(()) => {
                    tracing::info!(cert = %self.cert_path.display(), "TLS certificate reloaded")
                }
                Err(error) => tracing::error!(
                    %error,
                    "TLS certificate reload failed; the current certificate stays"
                ),
            }
        }
    }
}

impl ResolvesServerCert for CertificateSource {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// Builds the server configuration: TLS 1.2 and 1.3, ALPN `h2` then
/// `http/1.1`.
pub fn server_config(source: Arc<CertificateSource>) -> Result<rustls::ServerConfig, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(source);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// Trust roots for an HTTPS upstream, and the client certificate the
/// gateway presents to it, if any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamTls {
    /// PEM file of CA certificates to trust instead of the system roots.
    pub ca: Option<PathBuf>,
    /// PEM certificate chain and key presented to the upstream.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// Builds the client configuration for HTTPS upstreams.
pub fn client_config(tls: &UpstreamTls) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    match &tls.ca {
        Some(ca) => {
            for cert in certificates(ca)? {
                roots.add(cert)?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            for error in &native.errors {
                tracing::warn!(%error, "skipped a system root certificate");
            }
            let (added, ignored) = roots.add_parsable_certificates(native.certs);
            tracing::debug!(added, ignored, "loaded system root certificates");
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(roots);
    let config = match &tls.client_cert {
        Some((cert, key)) => {
            builder.with_client_auth_cert(certificates(cert)?, private_key(key)?)?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(config)
}

/// A client configuration for plain HTTP upstreams, which never use it:
/// the HTTPS connector needs one, and this one trusts nothing.
pub fn plain_client_config() -> Result<rustls::ClientConfig, TlsError> {
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth())
}
