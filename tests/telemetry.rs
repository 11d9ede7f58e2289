//! Metrics, health endpoints and Pushgateway, against a real Prometheus, a
//! real Pushgateway and promtool, all on loopback.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const BOUND: Duration = Duration::from_secs(60);

fn query(prom: SocketAddr, q: &str) -> Option<f64> {
    let (status, body) = http_get(prom, &format!("/api/v1/query?query={q}"));
    if status != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

#[test]
fn a_real_prometheus_scrapes_the_daemon_and_sees_counters_rise() {
    let Some(prometheus) = tool("RR_PROMETHEUS", "prometheus") else {
        return;
    };
    let dir = temp_dir();
    let src = good_file(dir.path(), 500, 2000);
    let daemon = Daemon::start(&["--source", &src, "--sink", "stdout", "--interval", "200ms"]);
    let target = daemon.addr.expect("daemon serves");
    let config = write(
        dir.path(),
        "prometheus.yml",
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: random-refresher\n    static_configs:\n      - targets: ['{target}']\n"
        )
        .as_bytes(),
    );
    let (_prom, prom) = start_prometheus(&prometheus, &config, dir.path());
    let up = eventually(BOUND, || query(prom, "up").filter(|v| *v == 1.0));
    assert_eq!(up, Some(1.0), "Prometheus never saw the daemon up");
    let first = eventually(BOUND, || {
        query(prom, "random_refresher_cycles_total%7Bresult%3D%22ok%22%7D")
    })
    .expect("cycles scraped");
    let later = eventually(BOUND, || {
        query(prom, "random_refresher_cycles_total%7Bresult%3D%22ok%22%7D").filter(|v| *v > first)
    });
    assert!(
        later.is_some(),
        "the ok-cycle counter did not rise past {first}"
    );
    let blocks = query(
        prom,
        "random_refresher_health_blocks_total%7Bresult%3D%22pass%22%7D",
    )
    .unwrap();
    assert!(blocks >= first, "passed blocks {blocks} < cycles {first}");
}

#[test]
fn promtool_finds_nothing_to_say_about_live_metrics() {
    let Some(promtool) = tool("RR_PROMTOOL", "promtool") else {
        return;
    };
    let dir = temp_dir();
    let src = good_file(dir.path(), 500, 20);
    let daemon = Daemon::start(&[
        "--source",
        &src,
        "--sink",
        "stdout",
        "--interval",
        "100ms",
        "--metrics-label",
        "node=worker-1",
        // Small windows, so that the assessment's series are there too.
        "--estimate-window",
        "4096",
    ]);
    daemon.wait_for_log("refreshing");
    assert!(
        eventually(BOUND, || daemon
            .metric("random_refresher_cycles_total{node=\"worker-1\",result=\"ok\"}")
            .filter(|v| *v >= 2.0))
        .is_some()
    );
    daemon.wait_for_log("min-entropy assessed");
    let (status, body) = daemon.get("/metrics");
    assert_eq!(status, 200);
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), body.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool said: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn each_estimator_of_an_assessed_window_is_a_series_and_the_assessed_value_is_their_minimum() {
    let dir = temp_dir();
    let src = good_file(dir.path(), 600, 20);
    let daemon = Daemon::start(&[
        "--source",
        &src,
        "--sink",
        "stdout",
        "--interval",
        "100ms",
        "--estimate-window",
        "4096",
    ]);
    assert!(
        daemon.wait_for_log("min-entropy assessed").is_some(),
        "{}",
        daemon.log()
    );
    let (_, text) = daemon.get("/metrics");
    let name = "random_refresher_min_entropy_estimator_per_symbol{";
    let series: Vec<(String, f64)> = text
        .lines()
        .filter_map(|l| l.strip_prefix(name))
        .map(|l| {
            let (labels, value) = l.rsplit_once(' ').unwrap();
            (labels.to_string(), value.parse().unwrap())
        })
        .collect();
    let on = |track: &str| -> Vec<String> {
        let track = format!("track=\"{track}\"");
        series
            .iter()
            .filter(|(l, _)| l.contains(&track))
            .map(|(l, _)| {
                l.split("estimator=\"")
                    .nth(1)
                    .unwrap()
                    .trim_end_matches("\"}")
                    .to_string()
            })
            .collect()
    };
    // Bytes of more than two values: all ten estimators on the bitstring;
    // on the literal track not the three for binary data, and t-tuple only
    // when some tuple occurs 35 times (not at 4096 samples of full entropy).
    assert_eq!(on("bitstring").len(), 10, "{series:?}");
    let literal = on("literal");
    for e in ["mcv", "lrs", "multi_mcw", "lag", "multi_mmc", "lz78y"] {
        assert!(
            literal.iter().any(|l| l == e),
            "no literal {e}: {literal:?}"
        );
    }
    assert!(
        literal
            .iter()
            .all(|e| !["collision", "markov", "compression"].contains(&e.as_str())),
        "{literal:?}"
    );
    assert_eq!(series.len(), literal.len() + 10, "{series:?}");
    let lowest = series
        .iter()
        .map(|(l, v)| if l.contains("bitstring") { 8.0 * v } else { *v })
        .fold(8.0, f64::min);
    let src_label = format!("source=\"{src}\"");
    let assessed = metric_value(
        &text,
        &format!("random_refresher_min_entropy_estimate_per_byte{{{src_label}}}"),
    )
    .unwrap();
    assert!(
        (assessed - lowest).abs() < 1e-9,
        "assessed {assessed}, lowest estimate {lowest}"
    );
    assert!(
        text.contains(&format!(
            "random_refresher_min_entropy_assessment_duration_seconds_count{{{src_label}}} "
        )),
        "no duration histogram"
    );
}

#[test]
fn every_contract_metric_is_exported_with_help_and_the_constant_label() {
    let dir = temp_dir();
    let src = good_file(dir.path(), 500, 20);
    let daemon = Daemon::start(&[
        "--source",
        &src,
        "--sink",
        "stdout",
        "--interval",
        "100ms",
        "--metrics-label",
        "node=worker-1",
    ]);
    assert!(
        eventually(BOUND, || daemon.metric(
            "random_refresher_cycles_total{node=\"worker-1\",result=\"ok\"}"
        ))
        .is_some()
    );
    let (_, text) = daemon.get("/metrics");
    for name in [
        "random_refresher_build_info",
        "random_refresher_source_bytes_read_total",
        "random_refresher_source_up",
        "random_refresher_source_read_duration_seconds",
        "random_refresher_health_blocks_total",
        "random_refresher_health_test_failures_total",
        "random_refresher_sink_bytes_total",
        "random_refresher_sink_errors_total",
        "random_refresher_entropy_credited_bytes_total",
        "random_refresher_kernel_reseeds_total",
        "random_refresher_cycles_total",
        "random_refresher_last_refresh_timestamp_seconds",
        "random_refresher_kernel_entropy_available_bytes",
        "random_refresher_kernel_pool_size_bytes",
        "random_refresher_hwrng_quality",
        "random_refresher_hwrng_current_info",
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "no HELP for {name}"
        );
        let sample = text
            .lines()
            .find(|l| l.starts_with(name) && !l.starts_with('#'));
        let sample = sample.unwrap_or_else(|| panic!("no sample of {name}"));
        assert!(sample.contains("node=\"worker-1\""), "{sample}");
    }
    assert!(
        text.contains("random_refresher_source_read_duration_seconds_bucket{"),
        "read duration is a histogram"
    );
    for test in [
        "monobit",
        "poker",
        "runs",
        "long_run",
        "continuous_run",
        "rct",
        "apt",
        "repeated_block",
    ] {
        assert!(
            text.contains(&format!("test=\"{test}\"")),
            "no failure series for {test}"
        );
    }
    let build = text
        .lines()
        .find(|l| l.starts_with("random_refresher_build_info{"))
        .expect("no build_info");
    assert!(build.ends_with("} 1"), "{build}");
    assert!(
        build.contains(&format!("version=\"{}\"", env!("CARGO_PKG_VERSION"))),
        "{build}"
    );
    assert!(build.contains("node=\"worker-1\""), "{build}");
    // The commit this clone is at, and the target the binary was built for.
    let head = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .unwrap();
    let head = String::from_utf8(head.stdout).unwrap();
    assert!(
        build.contains(&format!("commit=\"{}\"", head.trim())),
        "{build}"
    );
    let target = format!("target=\"{}-unknown-linux-gnu\"", std::env::consts::ARCH);
    assert!(build.contains(&target), "{build}");
}

#[test]
fn failed_blocks_show_per_test_and_per_source() {
    let dir = temp_dir();
    let mut data = good_block(601);
    data.extend(vec![0u8; 2 * BLOCK]);
    data.extend(framed(&[good_block(600)]));
    let src = write(dir.path(), "mixed", &data);
    let daemon = Daemon::start(&[
        "--source",
        src.to_str().unwrap(),
        "--sink",
        "stdout",
        "--interval",
        "1h",
    ]);
    let label = format!("source=\"{}\"", src.display());
    let fails = eventually(BOUND, || {
        daemon
            .metric(&format!(
                "random_refresher_health_blocks_total{{{label},result=\"fail\"}}"
            ))
            .filter(|v| *v == 2.0)
    });
    assert_eq!(fails, Some(2.0));
    assert_eq!(
        daemon.metric(&format!(
            "random_refresher_health_test_failures_total{{{label},test=\"monobit\"}}"
        )),
        Some(2.0)
    );
    assert_eq!(
        daemon.metric(&format!(
            "random_refresher_health_test_failures_total{{{label},test=\"rct\"}}"
        )),
        Some(2.0)
    );
    // The start-up block, then after the zeros the delivered block and the
    // one that released it; the last block is not needed this cycle.
    assert_eq!(
        daemon.metric(&format!(
            "random_refresher_health_blocks_total{{{label},result=\"pass\"}}"
        )),
        Some(3.0)
    );
    assert_eq!(
        daemon.metric(&format!(
            "random_refresher_source_bytes_read_total{{{label}}}"
        )),
        Some(5.0 * BLOCK as f64)
    );
    assert_eq!(
        daemon.metric("random_refresher_sink_bytes_total{sink=\"stdout\"}"),
        Some(BLOCK as f64)
    );
}

fn start_pushgateway() -> Option<(Service, SocketAddr)> {
    let pgw = tool("RR_PUSHGATEWAY", "prometheus-pushgateway")?;
    let port = free_port();
    let svc = Service(
        Command::new(pgw)
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // Debian's build persists to /var/lib by default; keep tests in memory.
            .arg("--persistence.file=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    eventually(BOUND, || std::net::TcpStream::connect(addr).ok()).expect("pushgateway listens");
    Some((svc, addr))
}

#[test]
fn once_leaves_its_metrics_on_the_pushgateway_grouped_by_job_and_instance() {
    let Some((_pgw, addr)) = start_pushgateway() else {
        return;
    };
    let dir = temp_dir();
    let src = good_file(dir.path(), 500, 1);
    let out = run(&[
        "once",
        "--source",
        &src,
        "--sink",
        "stdout",
        "--push-gateway",
        &format!("http://{addr}"),
        "--push-instance",
        "node-7",
        "--metrics-label",
        "zone=a",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let (status, text) = http_get(addr, "/metrics");
    assert_eq!(status, 200);
    let series = "random_refresher_cycles_total{instance=\"node-7\",job=\"random-refresher\",result=\"ok\",zone=\"a\"}";
    assert_eq!(
        metric_value(&text, series),
        Some(1.0),
        "{series} missing from the gateway:\n{text}"
    );
    // The group is listed under job and instance.
    let (_, groups) = http_get(addr, "/api/v1/metrics");
    let v: serde_json::Value = serde_json::from_str(&groups).unwrap();
    let groups = v["data"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert_eq!(groups[0]["labels"]["job"], "random-refresher");
    assert_eq!(groups[0]["labels"]["instance"], "node-7");
    assert_eq!(groups[0]["last_push_successful"], true);
}

#[test]
fn a_pushgateway_that_is_down_fails_soft() {
    let dir = temp_dir();
    let src = good_file(dir.path(), 500, 1);
    let port = free_port();
    let out = run(&[
        "once",
        "--source",
        &src,
        "--sink",
        "stdout",
        "--push-gateway",
        &format!("http://127.0.0.1:{port}"),
    ]);
    // `once` pushes once, synchronously: a failed push is its exit code.
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("push failed"), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("refreshing goes on"),
        "{}",
        stderr(&out)
    );

    // The daemon keeps refreshing and counts the failed pushes.
    let src = good_file(dir.path(), 500, 200);
    let daemon = Daemon::start(&[
        "--source",
        &src,
        "--sink",
        "stdout",
        "--interval",
        "100ms",
        "--push-gateway",
        &format!("http://127.0.0.1:{port}"),
        "--push-interval",
        "100ms",
    ]);
    let pushes = eventually(BOUND, || {
        daemon
            .metric("random_refresher_push_errors_total")
            .filter(|v| *v >= 3.0)
    });
    assert!(pushes.is_some(), "{}", daemon.log());
    assert!(
        daemon
            .metric("random_refresher_cycles_total{result=\"ok\"}")
            .unwrap()
            >= 3.0
    );
    assert_eq!(
        daemon.log().matches("push failed").count(),
        1,
        "logged once per change"
    );
}

#[test]
fn readiness_follows_the_source_through_failure_and_recovery() {
    let dir = temp_dir();
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    let daemon = Daemon::start(&[
        "--source",
        fifo.to_str().unwrap(),
        "--sink",
        "stdout",
        "--interval",
        "100ms",
        "--read-timeout",
        "300ms",
        "--retry-initial",
        "200ms",
        "--retry-max",
        "400ms",
        "--max-failed-cycles",
        "1000",
    ]);
    assert_eq!(daemon.get("/readyz").0, 503, "not ready before a delivery");
    assert!(
        daemon
            .get("/readyz")
            .1
            .contains("no tested batch delivered yet")
    );
    assert_eq!(daemon.get("/healthz").0, 200);

    let feed = |seed: u64, blocks: u64| {
        let path = fifo.clone();
        std::thread::spawn(move || {
            let mut w = std::fs::OpenOptions::new().write(true).open(path).unwrap();
            for i in 0..blocks {
                if std::io::Write::write_all(&mut w, &good_block(seed + i)).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let writer = feed(700, 40);
    assert!(
        eventually(BOUND, || (daemon.get("/readyz").0 == 200).then_some(())).is_some(),
        "{}",
        daemon.log()
    );
    writer.join().unwrap();
    // The writer is gone: the source fails, readiness goes.
    let not_ready = eventually(BOUND, || Some(daemon.get("/readyz")).filter(|r| r.0 == 503));
    assert!(not_ready.unwrap().1.contains("no healthy source"));
    assert!(
        eventually(BOUND, || daemon
            .metric(&format!(
                "random_refresher_source_up{{source=\"{}\"}}",
                fifo.display()
            ))
            .filter(|v| *v == 0.0))
        .is_some()
    );
    assert_eq!(
        daemon.get("/healthz").0,
        200,
        "the loop is alive while the source is down"
    );
    // A new writer: the retried source passes a batch and is trusted again.
    let writer = feed(800, 200);
    assert!(
        eventually(BOUND, || (daemon.get("/readyz").0 == 200).then_some(())).is_some(),
        "{}",
        daemon.log()
    );
    assert!(daemon.log().contains("trusted"), "{}", daemon.log());
    drop(daemon);
    let _ = writer.join();
}

#[test]
fn liveness_fails_when_the_loop_is_stuck() {
    // A stdout sink whose reader never reads: the loop blocks in write().
    let dir = temp_dir();
    let src = good_file(dir.path(), 500, 200);
    let mut cmd = bin();
    cmd.args([
        "run",
        "--listen-address",
        "127.0.0.1:0",
        "--source",
        &src,
        "--sink",
        "stdout",
        "--interval",
        "10ms",
        "--read-timeout",
        "100ms",
        "--batch-size",
        "25000",
    ])
    .stdout(Stdio::piped()); // held open by the Daemon, never read
    let daemon = Daemon::start_with(&mut cmd);
    let (status, body) = eventually(BOUND, || {
        Some(daemon.get("/healthz")).filter(|r| r.0 == 503)
    })
    .expect("healthz turns 503");
    assert_eq!(status, 503);
    assert!(body.contains("no progress"), "{body}");
}

#[test]
fn the_server_answers_bad_requests_and_stays_up() {
    let dir = temp_dir();
    let src = good_file(dir.path(), 500, 20);
    let daemon = Daemon::start(&["--source", &src, "--sink", "stdout", "--interval", "1h"]);
    let addr = daemon.addr.unwrap();
    assert_eq!(daemon.get("/nope").0, 404);
    assert_eq!(
        parse_response(&http_raw(
            addr,
            b"POST /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
        ))
        .0,
        405
    );
    assert_eq!(
        parse_response(&http_raw(addr, b"\x00\x01garbage\r\n\r\n")).0,
        400
    );
    let huge = format!(
        "GET /metrics HTTP/1.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    assert_eq!(parse_response(&http_raw(addr, huge.as_bytes())).0, 431);
    let head = http_raw(addr, b"HEAD /healthz HTTP/1.1\r\n\r\n");
    assert!(
        head.starts_with("HTTP/1.1 200") && head.ends_with("\r\n\r\n"),
        "{head}"
    );
    assert_eq!(daemon.get("/metrics?x=1").0, 200);
}

#[test]
fn a_bounded_load_on_metrics_is_answered_while_cycles_go_on() {
    let dir = temp_dir();
    let src = good_file(dir.path(), 500, 3000);
    let daemon = Daemon::start(&["--source", &src, "--sink", "stdout", "--interval", "20ms"]);
    let addr = daemon.addr.unwrap();
    assert!(
        eventually(BOUND, || daemon
            .metric("random_refresher_cycles_total{result=\"ok\"}"))
        .is_some()
    );
    let before = daemon
        .metric("random_refresher_cycles_total{result=\"ok\"}")
        .unwrap();
    let workers: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                (0..150)
                    .filter(|_| http_get(addr, "/metrics").0 == 200)
                    .count()
            })
        })
        .collect();
    let answered: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert_eq!(answered, 8 * 150, "every request is answered");
    let after = daemon
        .metric("random_refresher_cycles_total{result=\"ok\"}")
        .unwrap();
    assert!(
        after > before,
        "cycles stopped under load ({before} -> {after})"
    );
    assert_eq!(
        daemon.metric("random_refresher_cycles_total{result=\"failed\"}"),
        Some(0.0)
    );
}

#[test]
fn each_sink_has_its_own_series_and_credit_is_counted_per_source() {
    if !require_root() {
        return;
    }
    let dir = temp_dir();
    let (a, b) = (dir.path().join("a.seed"), dir.path().join("b.seed"));
    let (sink_a, sink_b) = (
        format!("file:{}", a.display()),
        format!("file:{}", b.display()),
    );
    // rdseed is listed second: it stands by while rdrand works, and is
    // credited nothing.
    let daemon = Daemon::start(&[
        "--source",
        "rdrand",
        "--source",
        "rdseed",
        "--sink",
        "kernel",
        "--sink",
        &sink_a,
        "--sink",
        &sink_b,
        "--interval",
        "200ms",
    ]);
    let credited = |source: &str| {
        daemon.metric(&format!(
            "random_refresher_entropy_credited_bytes_total{{source=\"{source}\"}}"
        ))
    };
    let rdrand = eventually(BOUND, || credited("rdrand").filter(|v| *v >= 30.0));
    assert!(rdrand.is_some(), "rdrand's credit never counted");
    assert_eq!(credited("rdseed"), Some(0.0));
    for sink in ["kernel", sink_a.as_str(), sink_b.as_str()] {
        let bytes = daemon.metric(&format!(
            "random_refresher_sink_bytes_total{{sink=\"{sink}\"}}"
        ));
        assert!(bytes.is_some_and(|v| v > 0.0), "{sink}: {bytes:?}");
        let errors = daemon.metric(&format!(
            "random_refresher_sink_errors_total{{sink=\"{sink}\"}}"
        ));
        assert_eq!(errors, Some(0.0), "{sink}");
    }
}

#[test]
fn a_source_or_sink_named_twice_is_refused_with_one_line() {
    for (args, want) in [
        (
            &["--source", "rdrand", "--source", "rdrand", "--sink", "mix"][..],
            "--source rdrand: given twice",
        ),
        (
            &[
                "--source",
                "rdrand",
                "--sink",
                "file:/tmp/x",
                "--sink",
                "file:/tmp/x",
            ][..],
            "--sink file:/tmp/x: given twice",
        ),
    ] {
        let out = bin().arg("once").args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        let errors: Vec<&str> = err.lines().filter(|l| l.contains("ERROR")).collect();
        assert_eq!(errors.len(), 1, "{err}");
        assert!(errors[0].contains(want), "{err}");
    }
}

#[test]
fn a_source_never_there_is_unavailable_and_one_that_stopped_is_down() {
    let dir = temp_dir();
    let file = good_file(dir.path(), 900, 6);
    let missing = dir.path().join("no-such-device").display().to_string();
    let daemon = Daemon::start(&[
        "--source",
        &file,
        "--source",
        &missing,
        "--source",
        "rdrand",
        "--sink",
        "stdout",
        "--interval",
        "200ms",
        "--retry-initial",
        "200ms",
    ]);
    let gauge = |name: &str, source: &str| {
        daemon.metric(&format!(
            "random_refresher_source_{name}{{source=\"{source}\"}}"
        ))
    };
    // The file was read, ended, and is gone for good: down, not unavailable.
    let ended = eventually(BOUND, || (gauge("up", &file) == Some(0.0)).then_some(()));
    assert!(ended.is_some(), "the file never ended");
    // Gone, and looked for again (SIGHUP reopens every source).
    std::fs::remove_file(&file).unwrap();
    let hup = Command::new("kill")
        .args(["-HUP", &daemon.child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let not_found = format!(
        "random_refresher_source_read_errors_total{{source=\"{file}\",kind=\"not_found\"}}"
    );
    let noticed = eventually(BOUND, || daemon.metric(&not_found).filter(|n| *n > 0.0));
    assert!(noticed.is_some(), "the file's absence never noticed");
    assert_eq!(gauge("available", &file), Some(1.0));
    assert_eq!(
        (gauge("up", &missing), gauge("available", &missing)),
        (Some(0.0), Some(0.0))
    );
    assert_eq!(
        (gauge("up", "rdrand"), gauge("available", "rdrand")),
        (Some(1.0), Some(1.0))
    );
}

/// The series a daemon in the chart's default shape exports once its first
/// assessment is in (one device source, the kernel sink, no push, no
/// quarantine), per family: the cardinality budget, 94 series a node. A new
/// family, label value or bucket changes what every node of a fleet costs
/// its Prometheus, so it must show here (and in docs/metrics.md's cost)
/// rather than grow unnoticed.
const SERIES_BUDGET: &[(&str, usize)] = &[
    ("process_cpu_seconds_total", 1),
    ("process_max_fds", 1),
    ("process_open_fds", 1),
    ("process_resident_memory_bytes", 1),
    ("process_start_time_seconds", 1),
    ("process_threads", 1),
    ("process_virtual_memory_bytes", 1),
    ("process_virtual_memory_max_bytes", 1),
    ("random_refresher_build_info", 1),
    ("random_refresher_cycles_total", 2),
    ("random_refresher_entropy_credited_bytes_total", 1),
    ("random_refresher_health_blocks_total", 2),
    ("random_refresher_health_test_failures_total", 8),
    ("random_refresher_hwrng_current_info", 1),
    ("random_refresher_hwrng_quality", 1),
    ("random_refresher_kernel_crng_ready", 1),
    ("random_refresher_kernel_crng_ready_boot_time_seconds", 1),
    ("random_refresher_kernel_entropy_available_bytes", 1),
    ("random_refresher_kernel_pool_size_bytes", 1),
    ("random_refresher_kernel_reseeds_skipped_total", 1),
    ("random_refresher_kernel_reseeds_total", 1),
    ("random_refresher_last_refresh_timestamp_seconds", 1),
    (
        "random_refresher_min_entropy_assessment_duration_seconds_bucket",
        10,
    ),
    (
        "random_refresher_min_entropy_assessment_duration_seconds_count",
        1,
    ),
    (
        "random_refresher_min_entropy_assessment_duration_seconds_sum",
        1,
    ),
    ("random_refresher_min_entropy_claimed_per_byte", 1),
    ("random_refresher_min_entropy_estimate_per_byte", 1),
    ("random_refresher_min_entropy_estimator_per_symbol", 17),
    ("random_refresher_sink_bytes_total", 1),
    ("random_refresher_sink_errors_total", 1),
    ("random_refresher_source_available", 1),
    ("random_refresher_source_bytes_read_total", 1),
    ("random_refresher_source_read_duration_seconds_bucket", 15),
    ("random_refresher_source_read_duration_seconds_count", 1),
    ("random_refresher_source_read_duration_seconds_sum", 1),
    ("random_refresher_source_read_errors_total", 10),
    ("random_refresher_source_up", 1),
];

#[test]
fn a_default_daemon_exports_exactly_its_series_budget() {
    if !require_root() {
        return;
    }
    let dir = temp_dir();
    let src = good_file(dir.path(), 1200, 100);
    // A window of 65,536 samples fills in three cycles, and every
    // estimator applies to it, as at the default 1,000,000.
    let daemon = Daemon::start(&[
        "--source",
        &src,
        "--sink",
        "kernel",
        "--batch-size",
        "25000",
        "--estimate-window",
        "65536",
        "--estimate-every",
        "1",
        "--interval",
        "300ms",
        "--metrics-label",
        "node=worker-1",
    ]);
    let assessed = eventually(BOUND, || {
        let text = daemon.get("/metrics").1;
        text.contains("random_refresher_min_entropy_estimator_per_symbol{")
            .then_some(())
    });
    assert!(assessed.is_some(), "no assessment");
    // Once more: the first scrape may have caught the estimators being set.
    std::thread::sleep(Duration::from_millis(100));
    let text = daemon.get("/metrics").1;
    let mut found = std::collections::BTreeMap::<String, usize>::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let family = line.split(['{', ' ']).next().unwrap();
        *found.entry(family.to_owned()).or_default() += 1;
    }
    let budget: std::collections::BTreeMap<String, usize> = SERIES_BUDGET
        .iter()
        .map(|(f, n)| (f.to_string(), *n))
        .collect();
    assert_eq!(found, budget, "the series a default daemon exports changed");
    assert_eq!(found.values().sum::<usize>(), 94);
    // What one scrape costs on the wire, uncompressed (HELP and TYPE lines
    // are most of it): about 14 KB.
    assert!(text.len() < 16_000, "{} bytes a scrape", text.len());
}

#[test]
fn the_hwrng_is_named_dev_hwrng_by_whatever_path_reaches_it() {
    use std::os::unix::fs::MetadataExt;
    if !require_root() {
        return;
    }
    let Ok(hwrng) = std::fs::metadata("/dev/hwrng") else {
        eprintln!("skipped: no /dev/hwrng");
        return;
    };
    // The chart's /host/dev/hwrng: another node of the same device.
    let dir = temp_dir();
    let node = dir.path().join("hwrng");
    let c = std::ffi::CString::new(node.to_str().unwrap()).unwrap();
    // SAFETY: a NUL-terminated path.
    let rc = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, hwrng.rdev()) };
    assert_eq!(rc, 0, "mknod: {}", std::io::Error::last_os_error());
    let node = node.display().to_string();
    let daemon = Daemon::start(&["--source", &node, "--sink", "mix", "--interval", "1h"]);
    let text = daemon.get("/metrics").1;
    assert!(
        text.contains("random_refresher_source_up{source=\"/dev/hwrng\"}"),
        "{text}"
    );
    assert!(!text.contains(&format!("source=\"{node}\"")), "{text}");
}
