//! The lock on the metrics port: a web configuration file in the format of
//! the Prometheus exporter-toolkit, the file node_exporter takes with
//! `--web.config.file`, so that a fleet locks both exporters one way.
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt          # PEM chain, leaf first
//!   key_file: server.key           # PEM key (PKCS#8, PKCS#1 or SEC1)
//!   client_auth_type: RequireAndVerifyClientCert   # optional
//!   client_ca_file: clients.crt    # needed by the two Verify types
//!   min_version: TLS12             # TLS12 (default) or TLS13
//! basic_auth_users:
//!   prometheus: $2y$10$...         # bcrypt hash (htpasswd -nBC 10)
//! ```
//!
//! Relative paths are taken from the file's folder, as exporter-toolkit
//! takes them. An empty file locks nothing. What rustls cannot do, or what
//! would add nothing, is refused with one line rather than half-honoured:
//! TLS 1.0 and 1.1, the client-auth types that accept an unverified
//! certificate, cipher suite and curve lists (rustls offers only suites
//! without known weaknesses), `http_server_config`.
//!
//! `/healthz` and `/readyz` answer without credentials: they say only
//! whether the daemon is alive and ready, and a kubelet cannot send a
//! password without writing it into the Pod spec. A certificate and key
//! are read again when either file changes (a renewal by cert-manager),
//! checked at the next connection; a renewal that does not load is logged
//! and the certificate in use is kept. Users change on restart.
//!
//! A bcrypt hash costs tens of milliseconds to check, every scrape; a
//! password that matched is remembered per user as its SHA-256, as
//! exporter-toolkit caches it, so that a scrape costs one hash. A user
//! that does not exist is checked against a configured hash all the same,
//! so that the answer's time does not tell which users exist.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use base64::Engine;
use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use serde::Deserialize;
use tracing::{info, warn};

#[derive(Debug, thiserror::Error)]
pub enum WebConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("not a web configuration file: {0}")]
    Syntax(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{what} {path}: {reason}")]
    Pem {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("the TLS settings do not load: {0}")]
    Tls(#[from] rustls::Error),
}

/// The file as written (exporter-toolkit's field names).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    tls_server_config: Option<TlsFile>,
    basic_auth_users: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    #[serde(default)]
    cert_file: String,
    #[serde(default)]
    key_file: String,
    #[serde(default)]
    client_auth_type: Option<String>,
    #[serde(default)]
    client_ca_file: Option<String>,
    #[serde(default)]
    min_version: Option<String>,
    #[serde(default)]
    max_version: Option<String>,
}

/// Whether and how a client's certificate is asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    None,
    /// Verified against the client CA when given; optional.
    VerifyIfGiven,
    /// Required, and verified against the client CA.
    Require,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// Validated TLS settings; the files they name are read by [`Self::load`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_ca_file: Option<PathBuf>,
    pub client_auth: ClientAuth,
    pub min_version: TlsVersion,
    pub max_version: TlsVersion,
}

/// A loaded web configuration: what the server needs.
#[derive(Debug)]
pub struct WebConfig {
    pub tls: Option<TlsSettings>,
    pub users: Option<Users>,
}

/// What a loaded file locks the port with: the TLS config, read from its
/// files, and the users.
pub struct Lock {
    pub tls: Option<TlsReloader>,
    pub users: Option<Users>,
}

/// Reads and checks a web configuration file, certificates, keys and
/// hashes included, so that every mistake shows at start.
pub fn load(path: &Path) -> Result<Lock, WebConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| WebConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let config = parse(&text, dir)?;
    Ok(Lock {
        tls: config.tls.map(TlsReloader::new).transpose()?,
        users: config.users,
    })
}

/// The pure half of [`load`]: the text, with relative paths from `dir`.
pub fn parse(text: &str, dir: &Path) -> Result<WebConfig, WebConfigError> {
    let file: File = if text.trim().is_empty() {
        File::default()
    } else {
        serde_norway::from_str(text).map_err(|e| WebConfigError::Syntax(e.to_string()))?
    };
    let tls = file
        .tls_server_config
        .map(|t| tls_settings(t, dir))
        .transpose()?;
    let users = match file.basic_auth_users {
        Some(users) if !users.is_empty() => Some(Users::new(users)?),
        _ => None,
    };
    Ok(WebConfig { tls, users })
}

fn tls_settings(t: TlsFile, dir: &Path) -> Result<TlsSettings, WebConfigError> {
    let invalid = |s: &str| Err(WebConfigError::Invalid(s.to_string()));
    if t.cert_file.is_empty() {
        return invalid("tls_server_config: missing cert_file");
    }
    if t.key_file.is_empty() {
        return invalid("tls_server_config: missing key_file");
    }
    let client_auth = match t.client_auth_type.as_deref().unwrap_or("NoClientCert") {
        "" | "NoClientCert" => ClientAuth::None,
        "VerifyClientCertIfGiven" => ClientAuth::VerifyIfGiven,
        "RequireAndVerifyClientCert" => ClientAuth::Require,
        "RequestClientCert" | "RequireAnyClientCert" => {
            return Err(WebConfigError::Invalid(format!(
                "tls_server_config.client_auth_type {}: not supported, as it accepts a certificate nobody verified; use VerifyClientCertIfGiven or RequireAndVerifyClientCert with client_ca_file",
                t.client_auth_type.unwrap_or_default()
            )));
        }
        other => {
            return Err(WebConfigError::Invalid(format!(
                "tls_server_config.client_auth_type {other}: expected NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert"
            )));
        }
    };
    let client_ca_file = t
        .client_ca_file
        .filter(|s| !s.is_empty())
        .map(|f| dir.join(f));
    if client_auth != ClientAuth::None && client_ca_file.is_none() {
        return invalid("tls_server_config: client_auth_type needs client_ca_file");
    }
    let min_version = version("min_version", t.min_version.as_deref(), TlsVersion::Tls12)?;
    let max_version = version("max_version", t.max_version.as_deref(), TlsVersion::Tls13)?;
    if min_version > max_version {
        return invalid("tls_server_config: min_version is above max_version");
    }
    Ok(TlsSettings {
        cert_file: dir.join(t.cert_file),
        key_file: dir.join(t.key_file),
        client_ca_file,
        client_auth,
        min_version,
        max_version,
    })
}

fn version(
    field: &str,
    s: Option<&str>,
    default: TlsVersion,
) -> Result<TlsVersion, WebConfigError> {
    match s.unwrap_or("") {
        "" => Ok(default),
        "TLS12" => Ok(TlsVersion::Tls12),
        "TLS13" => Ok(TlsVersion::Tls13),
        "TLS10" | "TLS11" => Err(WebConfigError::Invalid(format!(
            "tls_server_config.{field} {}: TLS 1.0 and 1.1 are not offered; use TLS12 or TLS13",
            s.unwrap_or_default()
        ))),
        other => Err(WebConfigError::Invalid(format!(
            "tls_server_config.{field} {other}: expected TLS12 or TLS13"
        ))),
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl TlsSettings {
    /// Reads the certificate, key and client CA into a server config.
    pub fn load(&self) -> Result<Arc<ServerConfig>, WebConfigError> {
        let pem = |what, path: &Path, e: &dyn std::fmt::Display| WebConfigError::Pem {
            what,
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&self.cert_file)
            .and_then(Iterator::collect)
            .map_err(|e| pem("tls_server_config.cert_file", &self.cert_file, &e))?;
        if certs.is_empty() {
            return Err(pem(
                "tls_server_config.cert_file",
                &self.cert_file,
                &"no certificate in it",
            ));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key_file)
            .map_err(|e| pem("tls_server_config.key_file", &self.key_file, &e))?;
        let versions: Vec<&'static rustls::SupportedProtocolVersion> = [
            (TlsVersion::Tls12, &rustls::version::TLS12),
            (TlsVersion::Tls13, &rustls::version::TLS13),
        ]
        .into_iter()
        .filter(|(v, _)| (self.min_version..=self.max_version).contains(v))
        .map(|(_, p)| p)
        .collect();
        let builder =
            ServerConfig::builder_with_provider(provider()).with_protocol_versions(&versions)?;
        let builder = match (&self.client_ca_file, self.client_auth) {
            (Some(ca), auth) if auth != ClientAuth::None => {
                builder.with_client_cert_verifier(self.client_verifier(ca, auth)?)
            }
            _ => builder.with_no_client_auth(),
        };
        let mut config = builder.with_single_cert(certs, key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    fn client_verifier(
        &self,
        ca: &Path,
        auth: ClientAuth,
    ) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, WebConfigError> {
        let what = "tls_server_config.client_ca_file";
        let pem = |reason: String| WebConfigError::Pem {
            what,
            path: ca.to_path_buf(),
            reason,
        };
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(ca).map_err(|e| pem(e.to_string()))? {
            roots
                .add(cert.map_err(|e| pem(e.to_string()))?)
                .map_err(|e| pem(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(pem("no certificate in it".into()));
        }
        let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
        let builder = if auth == ClientAuth::VerifyIfGiven {
            builder.allow_unauthenticated()
        } else {
            builder
        };
        builder.build().map_err(|e| pem(e.to_string()))
    }

    fn stamps(&self) -> Vec<Option<(SystemTime, u64)>> {
        [
            Some(&self.cert_file),
            Some(&self.key_file),
            self.client_ca_file.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
    }
}

/// The server config in use, read again when a file it came from changes.
pub struct TlsReloader {
    settings: TlsSettings,
    stamps: Vec<Option<(SystemTime, u64)>>,
    current: Arc<ServerConfig>,
}

impl TlsReloader {
    pub fn new(settings: TlsSettings) -> Result<Self, WebConfigError> {
        let stamps = settings.stamps();
        let current = settings.load()?;
        Ok(Self {
            settings,
            stamps,
            current,
        })
    }

    /// The config for the next connection: the files are looked at (three
    /// `stat`s) and loaded again only when one changed.
    pub fn current(&mut self) -> Arc<ServerConfig> {
        let stamps = self.settings.stamps();
        if stamps != self.stamps {
            self.stamps = stamps;
            match self.settings.load() {
                Ok(config) => {
                    info!(cert_file = %self.settings.cert_file.display(), "loaded the renewed TLS certificate");
                    self.current = config;
                }
                Err(e) => {
                    warn!(error = %e, "the renewed TLS certificate does not load; keeping the one in use")
                }
            }
        }
        Arc::clone(&self.current)
    }
}

/// Basic-auth users and their bcrypt hashes.
#[derive(Debug)]
pub struct Users {
    hashes: BTreeMap<String, String>,
    /// SHA-256 of the password that last matched, per user.
    matched: Mutex<HashMap<String, [u8; 32]>>,
}

impl Users {
    fn new(hashes: BTreeMap<String, String>) -> Result<Self, WebConfigError> {
        for (user, hash) in &hashes {
            if user.contains(':') {
                return Err(WebConfigError::Invalid(format!(
                    "basic_auth_users: user `{user}` holds a ':', which Basic auth cannot carry"
                )));
            }
            if hash.parse::<bcrypt::HashParts>().is_err() {
                return Err(WebConfigError::Invalid(format!(
                    "basic_auth_users.{user}: not a bcrypt hash (expected $2y$, $2b$ or $2a$; make one with htpasswd -nBC 10 {user})"
                )));
            }
        }
        Ok(Self {
            hashes,
            matched: Mutex::new(HashMap::new()),
        })
    }

    /// Whether an `Authorization` header's value names a user with the
    /// right password.
    pub fn allows(&self, authorization: Option<&str>) -> bool {
        let Some((user, password)) = authorization.and_then(basic_credentials) else {
            return false;
        };
        let digest = ring::digest::digest(&ring::digest::SHA256, password.as_bytes());
        let digest: [u8; 32] = digest.as_ref().try_into().unwrap_or([0; 32]);
        let matched = || self.matched.lock().unwrap_or_else(|e| e.into_inner());
        if matched()
            .get(&user)
            .is_some_and(|known| equal(known, &digest))
        {
            return true;
        }
        // An unknown user is checked against a real hash too, so that the
        // time taken does not tell which users exist. The lock is not held
        // while bcrypt works, so a wrong password delays nobody else.
        let known = self.hashes.contains_key(&user);
        let Some(hash) = self
            .hashes
            .get(&user)
            .or_else(|| self.hashes.values().next())
        else {
            return false;
        };
        let ok = bcrypt::verify(&password, hash).unwrap_or(false) && known;
        if ok {
            matched().insert(user, digest);
        }
        ok
    }
}

/// Constant time: the digests of a right and a wrong password differ early.
fn equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `Basic base64(user:password)`, the scheme in any case.
pub fn basic_credentials(header: &str) -> Option<(String, String)> {
    let (scheme, encoded) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(text: &str) -> String {
        match parse(text, "/etc/rr".as_ref()) {
            Ok(c) => panic!("accepted: {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn an_empty_file_locks_nothing() {
        for text in ["", "\n", "# nothing\n", "{}"] {
            let c = parse(text, "/".as_ref()).unwrap();
            assert!(c.tls.is_none() && c.users.is_none(), "{text:?}");
        }
    }

    #[test]
    fn relative_paths_are_taken_from_the_files_folder() {
        let text = "tls_server_config:\n  cert_file: tls/server.crt\n  key_file: /abs/server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: ca.crt\n  min_version: TLS13\n";
        let tls = parse(text, "/etc/rr".as_ref()).unwrap().tls.unwrap();
        assert_eq!(
            tls,
            TlsSettings {
                cert_file: "/etc/rr/tls/server.crt".into(),
                key_file: "/abs/server.key".into(),
                client_ca_file: Some("/etc/rr/ca.crt".into()),
                client_auth: ClientAuth::Require,
                min_version: TlsVersion::Tls13,
                max_version: TlsVersion::Tls13,
            }
        );
    }

    #[test]
    fn what_cannot_be_honoured_is_refused_by_name() {
        let tls = |rest: &str| format!("tls_server_config:\n  cert_file: a\n  key_file: b\n{rest}");
        let cases = [
            (tls("  min_version: TLS10\n"), "min_version TLS10: TLS 1.0 and 1.1 are not offered"),
            (tls("  max_version: TLS14\n"), "max_version TLS14: expected TLS12 or TLS13"),
            (tls("  min_version: TLS13\n  max_version: TLS12\n"), "min_version is above max_version"),
            (tls("  client_auth_type: RequireAnyClientCert\n"), "accepts a certificate nobody verified"),
            (tls("  client_auth_type: VerifyClientCertIfGiven\n"), "client_auth_type needs client_ca_file"),
            (tls("  client_auth_type: Sometimes\n"), "client_auth_type Sometimes: expected NoClientCert"),
            (tls("  cipher_suites: [TLS_AES_128_GCM_SHA256]\n"), "unknown field `cipher_suites`"),
            ("tls_server_config:\n  key_file: b\n".into(), "missing cert_file"),
            ("tls_server_config:\n  cert_file: a\n".into(), "missing key_file"),
            ("http_server_config:\n  http2: false\n".into(), "unknown field `http_server_config`"),
            ("basic_auth_users:\n  alice: secret\n".into(), "basic_auth_users.alice: not a bcrypt hash"),
            ("basic_auth_users:\n  \"a:b\": $2y$04$abcdefghijklmnopqrstuu5Bn6Ff8fVsY2j5jE6Ax5oWqYl5Pq0ue\n".into(), "holds a ':'"),
            ("- a list\n".into(), "not a web configuration file"),
        ];
        for (text, want) in cases {
            let got = refused(&text);
            assert!(got.contains(want), "{text:?}: {got}");
        }
    }

    #[test]
    fn a_user_is_let_in_with_the_right_password_only() {
        let alice = bcrypt::hash("right", 4).unwrap();
        let bob = bcrypt::hash("other", 4).unwrap();
        let text = format!("basic_auth_users:\n  alice: {alice}\n  bob: {bob}\n");
        let users = parse(&text, "/".as_ref()).unwrap().users.unwrap();
        let header = |u: &str, p: &str| {
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            format!("Basic {token}")
        };
        assert!(!users.allows(None));
        assert!(!users.allows(Some(&header("alice", "wrong"))));
        assert!(
            !users.allows(Some(&header("alice", "other"))),
            "bob's password"
        );
        assert!(
            !users.allows(Some(&header("carol", "right"))),
            "no such user"
        );
        assert!(users.allows(Some(&header("alice", "right"))));
        // Remembered now; a wrong password is still refused.
        assert!(users.allows(Some(&header("alice", "right"))));
        assert!(!users.allows(Some(&header("alice", "righ"))));
        assert!(users.allows(Some(&header("bob", "other"))));
        assert!(!users.allows(Some("Bearer abc")));
        assert!(!users.allows(Some("Basic not-base64!")));
    }

    #[test]
    fn basic_credentials_keep_colons_in_the_password() {
        assert_eq!(
            basic_credentials("basic YTpiOmM="),
            Some(("a".into(), "b:c".into()))
        );
        assert_eq!(basic_credentials("Basic YWJj"), None, "no colon");
        assert_eq!(basic_credentials("Digest YTpi"), None);
    }
}
