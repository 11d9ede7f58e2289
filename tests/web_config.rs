//! The locked metrics port (`--web-config-file`, exporter-toolkit's
//! format): real certificates made by openssl, a bcrypt hash made by
//! Apache's htpasswd, requests by curl, and a real Prometheus scraping over
//! TLS with basic auth, all on loopback.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;

const BOUND: Duration = Duration::from_secs(60);
const USER: &str = "prometheus";
const PASSWORD: &str = "correct horse";

fn checked(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A CA, and certificates it signs, by the openssl command.
struct Pki<'a> {
    openssl: PathBuf,
    dir: &'a Path,
}

impl Pki<'_> {
    fn ca(&self, name: &str) {
        checked(
            Command::new(&self.openssl)
                .current_dir(self.dir)
                .args([
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:prime256v1",
                ])
                .args(["-nodes", "-days", "2", "-subj", &format!("/CN={name}")])
                .args(["-addext", "basicConstraints=critical,CA:TRUE"])
                .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
                .args([
                    "-keyout",
                    &format!("{name}.key"),
                    "-out",
                    &format!("{name}.crt"),
                ]),
        );
    }

    /// `name.crt` and `name.key`, signed by `ca`, for `usage` (serverAuth
    /// or clientAuth).
    fn leaf(&self, name: &str, ca: &str, usage: &str) {
        let ext = write(
            self.dir,
            &format!("{name}.ext"),
            format!("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage={usage}\n").as_bytes(),
        );
        checked(
            Command::new(&self.openssl)
                .current_dir(self.dir)
                .args([
                    "req",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:prime256v1",
                    "-nodes",
                ])
                .args([
                    "-subj",
                    &format!("/CN={name}"),
                    "-keyout",
                    &format!("{name}.key"),
                ])
                .args(["-out", &format!("{name}.csr")]),
        );
        checked(
            Command::new(&self.openssl)
                .current_dir(self.dir)
                .args(["x509", "-req", "-days", "2", "-in", &format!("{name}.csr")])
                .args([
                    "-CA",
                    &format!("{ca}.crt"),
                    "-CAkey",
                    &format!("{ca}.key"),
                    "-CAcreateserial",
                ])
                .args([
                    "-extfile",
                    ext.to_str().unwrap(),
                    "-out",
                    &format!("{name}.crt"),
                ]),
        );
    }
}

/// A bcrypt hash of `password`, as an operator makes one: `htpasswd -nbBC 10`.
fn htpasswd_hash(htpasswd: &Path, password: &str) -> String {
    let out = checked(Command::new(htpasswd).args(["-nbBC", "10", USER, password]));
    let line = String::from_utf8(out.stdout).unwrap();
    let hash = line
        .trim()
        .strip_prefix(&format!("{USER}:"))
        .unwrap()
        .to_string();
    assert!(hash.starts_with("$2y$10$"), "{hash}");
    hash
}

/// The tools, or None (skipped) where they are missing outside the test command.
fn tools() -> Option<(PathBuf, PathBuf, PathBuf)> {
    Some((
        tool("RR_OPENSSL", "openssl")?,
        tool("RR_CURL", "curl")?,
        tool("RR_HTPASSWD", "htpasswd")?,
    ))
}

/// A server certificate by a new CA `ca`, and `web.yml` with it, `extra`
/// TLS lines and the user.
fn locked_config(dir: &Path, pki: &Pki, htpasswd: &Path, tls_extra: &str) -> PathBuf {
    pki.ca("ca");
    pki.leaf("server", "ca", "serverAuth");
    let hash = htpasswd_hash(htpasswd, PASSWORD);
    write(
        dir,
        "web.yml",
        format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n{tls_extra}basic_auth_users:\n  {USER}: {hash}\n"
        )
        .as_bytes(),
    )
}

/// [`locked_config`], and a daemon serving with it.
fn locked_daemon(dir: &Path, pki: &Pki, htpasswd: &Path, tls_extra: &str) -> Daemon {
    let config = locked_config(dir, pki, htpasswd, tls_extra);
    let src = good_file(dir, 700, 400);
    let daemon = Daemon::start(&[
        "--source",
        &src,
        "--sink",
        "stdout",
        "--interval",
        "200ms",
        "--web-config-file",
        config.to_str().unwrap(),
    ]);
    assert!(
        daemon.addr.is_some(),
        "the daemon did not serve: {}",
        daemon.log()
    );
    daemon
}

/// curl's status code for a GET (0: no HTTP answer at all) and body.
fn curl(curl: &Path, dir: &Path, url: &str, args: &[&str]) -> (u16, String) {
    let out = Command::new(curl)
        .current_dir(dir)
        .args([
            "-sS",
            "--max-time",
            "10",
            "-o",
            "body",
            "-w",
            "%{http_code}",
        ])
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    let code = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    let body = std::fs::read_to_string(dir.join("body")).unwrap_or_default();
    let _ = std::fs::remove_file(dir.join("body"));
    (code, body)
}

#[test]
fn tls_and_basic_auth_lock_metrics_and_leave_the_probes_open() {
    let Some((openssl, curl_bin, htpasswd)) = tools() else {
        return;
    };
    let dir = temp_dir();
    let pki = Pki {
        openssl,
        dir: dir.path(),
    };
    let daemon = locked_daemon(dir.path(), &pki, &htpasswd, "");
    assert!(
        daemon.log().contains("scheme=\"https\"") || daemon.log().contains("scheme=https"),
        "{}",
        daemon.log()
    );
    let base = format!("https://{}", daemon.addr.unwrap());
    let get = |path: &str, args: &[&str]| {
        let mut all = vec!["--cacert", "ca.crt"];
        all.extend_from_slice(args);
        curl(&curl_bin, dir.path(), &format!("{base}{path}"), &all)
    };
    let login = format!("{USER}:{PASSWORD}");
    let (code, body) = get("/metrics", &["-u", &login]);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("random_refresher_build_info{"), "{body}");
    // Twice more: the remembered password answers as the bcrypt check did.
    assert_eq!(get("/metrics", &["-u", &login]).0, 200);
    assert_eq!(get("/metrics", &["-u", &format!("{USER}:wrong")]).0, 401);
    assert_eq!(
        get("/metrics", &["-u", &format!("nobody:{PASSWORD}")]).0,
        401
    );
    let (code, body) = get("/metrics", &[]);
    assert_eq!((code, body.as_str()), (401, "unauthorized\n"));
    let headers = Command::new(&curl_bin)
        .current_dir(dir.path())
        .args(["-sS", "-D", "-", "-o", "/dev/null", "--cacert", "ca.crt"])
        .arg(format!("{base}/metrics"))
        .output()
        .unwrap();
    let headers = String::from_utf8_lossy(&headers.stdout).to_lowercase();
    assert!(
        headers.contains("www-authenticate: basic realm=\"random-refresher\""),
        "{headers}"
    );
    // The probes answer without a password; the readiness once a batch went out.
    assert_eq!(get("/healthz", &[]), (200, "ok\n".into()));
    let ready = eventually(BOUND, || Some(get("/readyz", &[])).filter(|r| r.0 == 200));
    assert_eq!(ready, Some((200, "ready\n".into())));
    // The daemon's own probe speaks https, as the kubelet's does, unverified.
    let probe = run(&["probe", "--url", &format!("{base}/healthz")]);
    assert!(probe.status.success(), "{}", stderr(&probe));
    // Plain HTTP to the TLS port gets no answer; the server stays up.
    let (code, _) = curl(
        &curl_bin,
        dir.path(),
        &format!("http://{}/healthz", daemon.addr.unwrap()),
        &[],
    );
    assert_eq!(code, 0, "a plain-HTTP request was answered");
    // A certificate the client does not trust is refused by the client.
    let (code, _) = curl(&curl_bin, dir.path(), &format!("{base}/healthz"), &[]);
    assert_eq!(code, 0, "curl trusted a certificate of an unknown CA");
    assert_eq!(get("/healthz", &[]).0, 200, "the server stopped answering");
}

#[test]
fn a_required_client_certificate_is_checked_against_the_client_ca() {
    let Some((openssl, curl_bin, htpasswd)) = tools() else {
        return;
    };
    let dir = temp_dir();
    let pki = Pki {
        openssl,
        dir: dir.path(),
    };
    pki.ca("clients");
    pki.leaf("scraper", "clients", "clientAuth");
    pki.ca("other");
    pki.leaf("stranger", "other", "clientAuth");
    let daemon = locked_daemon(
        dir.path(),
        &pki,
        &htpasswd,
        "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: clients.crt\n  min_version: TLS13\n",
    );
    let url = format!("https://{}/metrics", daemon.addr.unwrap());
    let login = format!("{USER}:{PASSWORD}");
    let with = |cert: &str| {
        let (crt, key) = (format!("{cert}.crt"), format!("{cert}.key"));
        curl(
            &curl_bin,
            dir.path(),
            &url,
            &[
                "--cacert", "ca.crt", "--cert", &crt, "--key", &key, "-u", &login,
            ],
        )
    };
    assert_eq!(with("scraper").0, 200);
    assert_eq!(
        with("stranger").0,
        0,
        "a certificate of another CA was let in"
    );
    let (code, _) = curl(
        &curl_bin,
        dir.path(),
        &url,
        &["--cacert", "ca.crt", "-u", &login],
    );
    assert_eq!(code, 0, "no client certificate, and yet an answer");
    let (code, _) = curl(
        &curl_bin,
        dir.path(),
        &url,
        &["--cacert", "ca.crt", "--tls-max", "1.2", "-u", &login],
    );
    assert_eq!(code, 0, "TLS 1.2 was accepted under min_version TLS13");
}

#[test]
fn a_renewed_certificate_is_served_from_the_next_connection() {
    let Some((openssl, curl_bin, htpasswd)) = tools() else {
        return;
    };
    let dir = temp_dir();
    let pki = Pki {
        openssl,
        dir: dir.path(),
    };
    let daemon = locked_daemon(dir.path(), &pki, &htpasswd, "");
    let url = format!("https://{}/healthz", daemon.addr.unwrap());
    assert_eq!(
        curl(&curl_bin, dir.path(), &url, &["--cacert", "ca.crt"]).0,
        200
    );
    // A renewal by another CA, written as cert-manager writes a Secret's
    // files: the key first, then the certificate.
    pki.ca("ca2");
    pki.leaf("renewed", "ca2", "serverAuth");
    std::fs::copy(
        dir.path().join("renewed.key"),
        dir.path().join("server.key"),
    )
    .unwrap();
    std::fs::copy(
        dir.path().join("renewed.crt"),
        dir.path().join("server.crt"),
    )
    .unwrap();
    let served = eventually(BOUND, || {
        Some(curl(&curl_bin, dir.path(), &url, &["--cacert", "ca2.crt"]).0).filter(|c| *c == 200)
    });
    assert_eq!(
        served,
        Some(200),
        "the renewed certificate was not served: {}",
        daemon.log()
    );
    assert_eq!(
        curl(&curl_bin, dir.path(), &url, &["--cacert", "ca.crt"]).0,
        0
    );
    // A renewal that does not load keeps the certificate in use.
    std::fs::write(dir.path().join("server.crt"), "not a certificate\n").unwrap();
    assert_eq!(
        curl(&curl_bin, dir.path(), &url, &["--cacert", "ca2.crt"]).0,
        200
    );
    assert!(
        daemon
            .wait_for_log("does not load; keeping the one in use")
            .is_some(),
        "{}",
        daemon.log()
    );
}

#[test]
fn a_web_config_that_does_not_load_stops_the_start_with_one_line() {
    let Some((openssl, _, _)) = tools() else {
        return;
    };
    let dir = temp_dir();
    let pki = Pki {
        openssl,
        dir: dir.path(),
    };
    pki.ca("ca");
    pki.leaf("server", "ca", "serverAuth");
    pki.leaf("other", "ca", "serverAuth");
    let src = good_file(dir.path(), 701, 50);
    let cases = [
        (
            "missing-key",
            "tls_server_config:\n  cert_file: server.crt\n  key_file: nowhere.key\n",
            "tls_server_config.key_file",
        ),
        (
            "wrong-key",
            "tls_server_config:\n  cert_file: server.crt\n  key_file: other.key\n",
            "do not load",
        ),
        (
            "cert-is-key",
            "tls_server_config:\n  cert_file: server.key\n  key_file: server.key\n",
            "tls_server_config.cert_file",
        ),
        (
            "tls10",
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS10\n",
            "TLS 1.0 and 1.1 are not offered",
        ),
        (
            "plain-password",
            "basic_auth_users:\n  prometheus: hunter2\n",
            "not a bcrypt hash",
        ),
        (
            "typo",
            "tls_server_config:\n  cert_flie: server.crt\n",
            "unknown field `cert_flie`",
        ),
    ];
    for (name, text, want) in cases {
        let config = write(dir.path(), &format!("{name}.yml"), text.as_bytes());
        let mut child = bin()
            .args([
                "run",
                "--listen-address",
                "127.0.0.1:0",
                "--source",
                &src,
                "--sink",
                "stdout",
            ])
            .args(["--web-config-file", config.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let status = wait_bounded(&mut child, Duration::from_secs(20)).expect("it exits");
        let mut err = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
        assert_eq!(status.code(), Some(2), "{name}: {err}");
        let lines: Vec<&str> = err
            .lines()
            .filter(|l| l.contains("--web-config-file"))
            .collect();
        assert_eq!(lines.len(), 1, "{name}: {err}");
        assert!(lines[0].contains(want), "{name}: {err}");
    }
    let once = run(&[
        "once",
        "--web-config-file",
        "/x.yml",
        "--source",
        &src,
        "--sink",
        "stdout",
    ]);
    assert_eq!(once.status.code(), Some(2));
    assert!(
        stderr(&once).contains("--web-config-file is for `run`"),
        "{}",
        stderr(&once)
    );
}

fn query(prom: SocketAddr, q: &str) -> Option<serde_json::Value> {
    let (status, body) = http_get(prom, &format!("/api/v1/query?query={q}"));
    (status == 200).then(|| serde_json::from_str(&body).ok())?
}

/// The scrape configuration the README gives for a locked daemon.
fn scrape_job(name: &str, target: SocketAddr, password_file: &str) -> String {
    format!(
        "  - job_name: {name}\n    scheme: https\n    tls_config:\n      ca_file: ca.crt\n    basic_auth:\n      username: {USER}\n      password_file: {password_file}\n    static_configs:\n      - targets: ['{target}']\n"
    )
}

#[test]
fn a_real_prometheus_scrapes_over_tls_with_basic_auth_and_wrong_credentials_are_refused() {
    let Some((openssl, _, htpasswd)) = tools() else {
        return;
    };
    let Some(prometheus) = tool("RR_PROMETHEUS", "prometheus") else {
        return;
    };
    let dir = temp_dir();
    let pki = Pki {
        openssl,
        dir: dir.path(),
    };
    let daemon = locked_daemon(dir.path(), &pki, &htpasswd, "");
    let target = daemon.addr.unwrap();
    write(dir.path(), "password", PASSWORD.as_bytes());
    write(dir.path(), "wrong-password", b"not it");
    let config = write(
        dir.path(),
        "prometheus.yml",
        format!(
            "global:\n  scrape_interval: 3s\n  scrape_timeout: 3s\nscrape_configs:\n{}{}",
            scrape_job("locked", target, "password"),
            scrape_job("wrong", target, "wrong-password")
        )
        .as_bytes(),
    );
    let (_prom, prom) = start_prometheus(&prometheus, &config, dir.path());
    let value = |q: &str| -> Option<f64> {
        query(prom, q)?["data"]["result"][0]["value"][1]
            .as_str()?
            .parse()
            .ok()
    };
    let cycles = eventually(BOUND, || {
        value("random_refresher_cycles_total%7Bjob%3D%22locked%22%2Cresult%3D%22ok%22%7D")
            .filter(|v| *v > 0.0)
    });
    assert!(
        cycles.is_some(),
        "Prometheus did not scrape the locked daemon"
    );
    assert_eq!(value("up%7Bjob%3D%22locked%22%7D"), Some(1.0));
    let wrong = eventually(BOUND, || {
        let (_, body) = http_get(prom, "/api/v1/targets");
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        v["data"]["activeTargets"]
            .as_array()?
            .iter()
            .find(|t| t["labels"]["job"] == "wrong" && t["health"] == "down")
            .map(|t| t["lastError"].as_str().unwrap_or("").to_string())
    });
    let wrong = wrong.expect("the wrong credentials' target never went down");
    assert!(wrong.contains("401"), "{wrong}");
    assert_eq!(value("up%7Bjob%3D%22wrong%22%7D"), Some(0.0));
    assert_eq!(
        value("count(random_refresher_build_info%7Bjob%3D%22wrong%22%7D)"),
        None,
        "a series came through the wrong credentials"
    );
}

#[test]
fn the_probes_default_url_turns_https_with_the_daemons_web_config() {
    let Some((openssl, _, htpasswd)) = tools() else {
        return;
    };
    let dir = temp_dir();
    let pki = Pki {
        openssl,
        dir: dir.path(),
    };
    let config = locked_config(dir.path(), &pki, &htpasswd, "");
    let src = good_file(dir.path(), 702, 400);
    // The image's HEALTHCHECK runs `probe` with no URL, in the daemon's
    // environment: the default port, the same web config.
    let daemon = Daemon::start_with(
        bin()
            .args([
                "run",
                "--listen-address",
                "127.0.0.1:9742",
                "--source",
                &src,
                "--sink",
                "stdout",
            ])
            .env("RANDOM_REFRESHER_WEB_CONFIG_FILE", &config)
            .stdout(Stdio::null()),
    );
    assert!(daemon.addr.is_some(), "{}", daemon.log());
    let with_env = bin()
        .arg("probe")
        .env("RANDOM_REFRESHER_WEB_CONFIG_FILE", &config)
        .output()
        .unwrap();
    assert!(with_env.status.success(), "{}", stderr(&with_env));
    let without = run(&["probe", "--timeout", "3s"]);
    assert_eq!(
        without.status.code(),
        Some(1),
        "plain http to the TLS port succeeded"
    );
    assert!(
        stderr(&without).contains("probe http://127.0.0.1:9742/healthz"),
        "{}",
        stderr(&without)
    );
}
