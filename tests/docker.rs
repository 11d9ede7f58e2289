//! The container image, built from the real Dockerfile and run with the real
//! Docker engine (tests/docker-setup.sh builds it and names it in RR_IMAGE).

mod common;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;

const BOUND: Duration = Duration::from_secs(90);

fn image() -> Option<String> {
    match std::env::var("RR_IMAGE") {
        Ok(i) => Some(i),
        Err(_) if std::env::var_os("RR_REQUIRE_TOOLS").is_some() => panic!("RR_IMAGE is not set"),
        Err(_) => {
            eprintln!("skipped: no RR_IMAGE (run the README's test command)");
            None
        }
    }
}

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("docker")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).trim().to_string()
}

#[test]
fn hadolint_passes_with_no_ignored_rules() {
    let Some(hadolint) = tool("RR_HADOLINT", "hadolint") else {
        return;
    };
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(hadolint)
        .arg(format!("{root}/Dockerfile"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let dockerfile = std::fs::read_to_string(format!("{root}/Dockerfile")).unwrap();
    assert!(!dockerfile.contains("hadolint ignore"));
}

#[test]
fn the_image_is_small_and_holds_the_binary_and_nothing_else() {
    let Some(image) = image() else { return };
    let size: u64 = text(&docker(&["image", "inspect", "-f", "{{.Size}}", &image]).stdout)
        .parse()
        .unwrap();
    assert!(size <= 5 * 1024 * 1024, "image is {size} bytes");

    let dir = temp_dir();
    let archive = dir.path().join("image.tar");
    assert!(
        docker(&["save", "-o", archive.to_str().unwrap(), &image])
            .status
            .success()
    );
    let unpacked = dir.path().join("x");
    std::fs::create_dir(&unpacked).unwrap();
    assert!(
        Command::new("tar")
            .arg("-xf")
            .arg(&archive)
            .arg("-C")
            .arg(&unpacked)
            .status()
            .unwrap()
            .success()
    );
    let mut files = Vec::new();
    for entry in walk(&unpacked) {
        if entry.file_name().is_some_and(|n| n == "layer.tar") {
            let out = Command::new("tar").arg("-tf").arg(&entry).output().unwrap();
            files.extend(text(&out.stdout).lines().map(String::from));
        }
    }
    assert_eq!(
        files,
        ["random-refresher"],
        "the image's layers hold {files:?}"
    );

    let config = |f: &str| text(&docker(&["image", "inspect", "-f", f, &image]).stdout);
    assert_eq!(
        config("{{json .Config.Entrypoint}}"),
        r#"["/random-refresher"]"#
    );
    assert_eq!(config("{{json .Config.Cmd}}"), r#"["run"]"#);
    assert!(config("{{json .Config.ExposedPorts}}").contains("9742/tcp"));
    assert!(config("{{json .Config.Healthcheck.Test}}").contains("probe"));
    let labels = config("{{json .Config.Labels}}");
    for l in ["source", "version", "licenses", "description"] {
        assert!(
            labels.contains(&format!("org.opencontainers.image.{l}")),
            "{labels}"
        );
    }
    // No shell to run.
    let out = docker(&[
        "run",
        "--rm",
        "--entrypoint",
        "/bin/sh",
        &image,
        "-c",
        "true",
    ]);
    assert!(!out.status.success());
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn once_in_a_container_writes_exactly_one_tested_batch() {
    let Some(image) = image() else { return };
    let out = docker(&[
        "run",
        "--rm",
        "--device",
        "/dev/hwrng",
        &image,
        "once",
        "--source",
        "/dev/hwrng",
        "--sink",
        "stdout",
        "--batch-size",
        "2500",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(out.stdout.len(), 2500);
    assert!(text(&out.stderr).contains("delivered one tested batch"));
}

#[test]
fn without_the_device_the_container_says_how_to_pass_it() {
    let Some(image) = image() else { return };
    let out = docker(&["run", "--rm", &image]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    let errors: Vec<_> = err.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(
        errors[0].contains("/dev/hwrng") && errors[0].contains("--device /dev/hwrng"),
        "{err}"
    );
}

#[test]
fn the_kernel_sink_needs_cap_add_sys_admin_and_mix_needs_nothing() {
    let Some(image) = image() else { return };
    let out = docker(&["run", "--rm", "--device", "/dev/hwrng", &image, "once"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("--cap-add SYS_ADMIN"));
    let out = docker(&[
        "run",
        "--rm",
        "--device",
        "/dev/hwrng",
        &image,
        "once",
        "--sink",
        "mix",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = docker(&[
        "run",
        "--rm",
        "--device",
        "/dev/hwrng",
        "--cap-add",
        "SYS_ADMIN",
        &image,
        "once",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn the_daemon_serves_turns_healthy_and_stops_cleanly() {
    let Some(image) = image() else { return };
    let port = free_port();
    let name = format!("rr-test-{}", std::process::id());
    let publish = format!("127.0.0.1:{port}:9742");
    let out = docker(&[
        "run",
        "-d",
        "--name",
        &name,
        "--device",
        "/dev/hwrng",
        "--cap-add",
        "SYS_ADMIN",
        "-p",
        &publish,
        "--health-interval",
        "1s",
        &image,
        "run",
        "--interval",
        "2s",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let result = std::panic::catch_unwind(|| {
        assert!(eventually(BOUND, || (http_get(addr, "/readyz").0 == 200).then_some(())).is_some());
        let cycles =
            |text: &str| metric_value(text, "random_refresher_cycles_total{result=\"ok\"}");
        let first = cycles(&http_get(addr, "/metrics").1).unwrap();
        assert!(
            eventually(BOUND, || cycles(&http_get(addr, "/metrics").1)
                .filter(|c| *c > first))
            .is_some()
        );
        assert!(
            metric_value(
                &http_get(addr, "/metrics").1,
                "random_refresher_kernel_reseeds_total"
            )
            .unwrap()
                >= 1.0
        );
        let healthy = eventually(BOUND, || {
            let s = text(&docker(&["inspect", "-f", "{{.State.Health.Status}}", &name]).stdout);
            (s == "healthy").then_some(s)
        });
        assert_eq!(healthy.as_deref(), Some("healthy"));
        // Docker kills what has not exited 3 seconds after SIGTERM (exit 137).
        assert!(docker(&["stop", "--time", "3", &name]).status.success());
        let code = text(&docker(&["inspect", "-f", "{{.State.ExitCode}}", &name]).stdout);
        assert_eq!(code, "0", "the daemon did not exit 0 within 3 s of SIGTERM");
    });
    docker(&["rm", "-f", &name]);
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}
