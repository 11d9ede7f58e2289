//! Wiring: logging, signals, and each subcommand from parsed arguments to
//! an exit code. The one place where errors become messages.

use std::os::unix::fs::FileTypeExt;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook::iterator::Signals;
use tracing::{error, info, warn};
use tracing_subscriber::EnvFilter;

use crate::cli::{CheckArgs, Cli, Command, ListenAddress, LogFormat, RefreshArgs, SourceArgs};
use crate::kernel::KernelPaths;
use crate::refresher::{Config, CycleOutcome, Refresher, Request};
use crate::source::ReadLimits;
use crate::telemetry::LoopStatus;
use crate::telemetry::exporter::Exporter;
use crate::telemetry::http::{self, HttpState};
use crate::telemetry::push::{self, Pusher};

/// Slack added to interval and read timeout before `/healthz` fails.
const LIVENESS_MARGIN: std::time::Duration = std::time::Duration::from_secs(10);

/// Exit codes: the contract with scripts, CronJobs and the kubelet.
pub const EXIT_OK: u8 = 0;
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_CONFIG: u8 = 2;

pub fn main(cli: Cli) -> ExitCode {
    init_logging(cli.log_format, cli.log_level.as_deref());
    let code = match cli.command {
        Command::Run(args) => run(&args),
        Command::Once(args) => once(&args),
        Command::Check(args) => check(&args),
        Command::Probe(args) => probe(&probe_url(&args), args.timeout),
        Command::Sources(args) => sources(&args),
        Command::Quarantine(args) => quarantine(&args),
    };
    ExitCode::from(code)
}

fn init_logging(format: LogFormat, level: Option<&str>) {
    let filter = match level {
        Some(l) => EnvFilter::try_new(l),
        None => EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new("info")),
    }
    .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.with_ansi(false).init(),
    }
}

/// Reports a fatal error once, as one line, and gives the exit code.
fn fail(code: u8, message: &str) -> u8 {
    error!("{message}");
    code
}

/// Installs the handlers; signals that come before `forward_signals` wait.
fn register_signals() -> std::io::Result<Signals> {
    Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR1])
}

fn watch_signals(stop: Arc<AtomicBool>) -> std::io::Result<Receiver<Request>> {
    forward_signals(register_signals()?, stop)
}

/// Starts the signal thread: SIGTERM and SIGINT set `stop` at once (so a
/// read in progress ends) and ask the loop to shut down; SIGHUP and SIGUSR1
/// become requests the loop serves between cycles.
fn forward_signals(
    mut signals: Signals,
    stop: Arc<AtomicBool>,
) -> std::io::Result<Receiver<Request>> {
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for signal in signals.forever() {
                let request = match signal {
                    SIGHUP => Request::ReopenSources,
                    SIGUSR1 => Request::LogStatistics,
                    _ => {
                        crate::source::note_stop_signal(signal);
                        stop.store(true, Ordering::Relaxed);
                        Request::Shutdown
                    }
                };
                if tx.send(request).is_err() {
                    break;
                }
            }
        })?;
    Ok(rx)
}

pub(crate) fn read_limits(
    args: &SourceArgs,
    stop: &Arc<AtomicBool>,
    progress: Option<Arc<LoopStatus>>,
) -> ReadLimits {
    ReadLimits {
        timeout: args.read_timeout,
        stop: Arc::clone(stop),
        progress: progress.map(|p| p as Arc<dyn crate::source::Heartbeat>),
    }
}

pub(crate) fn config(args: &RefreshArgs, limits: ReadLimits) -> Result<Config, String> {
    let s = &args.source;
    Ok(Config {
        health: args.health()?,
        sources: s.sources.clone(),
        sinks: args.sinks.clone(),
        random_device: args.random_device.clone(),
        batch_size: args.batch_size,
        interval: args.interval,
        entropy_per_byte: args.entropy_per_byte,
        credit_streams: args.credit_streams.clone(),
        max_failed_cycles: args.max_failed_cycles,
        limits,
        kernel: KernelPaths::new(&s.kernel.proc_root, &s.kernel.sys_root),
        quarantine: args.quarantine_hwrng,
        hold_quality: args.hold_hwrng_quality,
        hwrng: args.hwrng.hwrng.clone(),
        state_dir: Some(args.state.state_dir.clone()),
    })
}

/// What `run` and `once` share once everything is open and privileges
/// are dropped.
struct Started {
    refresher: Refresher,
    exporter: Arc<Exporter>,
    status: Arc<LoopStatus>,
    requests: Receiver<Request>,
    stop: Arc<AtomicBool>,
    liveness_limit: std::time::Duration,
}

/// Opens sources and sinks, installs the metrics, drops privileges and
/// starts the signal thread; the error is the exit code, already reported.
fn start(args: &RefreshArgs) -> Result<Started, u8> {
    let stop = Arc::new(AtomicBool::new(false));
    let signals = register_signals()
        .map_err(|e| fail(EXIT_FAILED, &format!("cannot install signal handlers: {e}")))?;
    let status = Arc::new(LoopStatus::default());
    let limits = read_limits(&args.source, &stop, Some(Arc::clone(&status)));
    let config = config(args, limits).map_err(|e| fail(EXIT_CONFIG, &e))?;
    let exporter = Exporter::new(&args.telemetry.metrics_labels, config.kernel.clone())
        .map(Arc::new)
        .map_err(|e| fail(EXIT_FAILED, &format!("cannot set up metrics: {e}")))?;
    log_start(&config);
    let liveness_limit = config.interval + config.limits.timeout + LIVENESS_MARGIN;
    let mut refresher = Refresher::new(config, &exporter.registry())
        .map_err(|e| fail(EXIT_CONFIG, &e.to_string()))?
        .with_status(Arc::clone(&status))
        .with_exporter(Arc::clone(&exporter));
    // Everything privileged is open: keep only what the sinks need, before
    // any other thread starts.
    match crate::privileges::drop_privileges(refresher.privilege_needs(), args.user) {
        Ok(kept) => {
            let mut names: Vec<String> = kept.iter().map(ToString::to_string).collect();
            names.sort();
            let kept = if names.is_empty() {
                "none".into()
            } else {
                names.join(",")
            };
            let uid = args.user.map(|u| u.uid);
            info!(capabilities_kept = kept, uid, "privileges dropped")
        }
        Err(e) => {
            refresher.finish();
            return Err(fail(EXIT_CONFIG, &format!("--user: {e}")));
        }
    }
    let requests = forward_signals(signals, Arc::clone(&stop))
        .map_err(|e| fail(EXIT_FAILED, &format!("cannot start the signal thread: {e}")))?;
    Ok(Started {
        refresher,
        exporter,
        status,
        requests,
        stop,
        liveness_limit,
    })
}

fn log_start(config: &Config) {
    let readings = config.kernel.read();
    info!(
        version = env!("CARGO_PKG_VERSION"),
        entropy_avail = readings.entropy_avail_bits,
        poolsize = readings.poolsize_bits,
        rng_current = readings.rng_current.as_deref(),
        rng_available = readings.rng_available.join(","),
        rng_quality = readings.rng_quality,
        sources = list(&config.sources),
        sinks = list(&config.sinks),
        rct_cutoff = config.health.cutoffs().rct,
        apt_cutoff = config.health.cutoffs().apt,
        "starting"
    );
}

/// A list as one log field: comma-separated, the way the options take it.
fn list<T: ToString>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// A report written to standard output; a reader that went away (`| head`)
/// ends the command quietly, as other Unix tools do.
fn report(result: std::io::Result<()>) -> u8 {
    match result {
        Ok(()) => EXIT_OK,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => EXIT_OK,
        Err(e) => fail(EXIT_FAILED, &format!("writing the report: {e}")),
    }
}

fn pusher(args: &RefreshArgs, exporter: &Arc<Exporter>) -> Option<Pusher> {
    let t = &args.telemetry;
    t.push_gateway.as_deref().map(|gateway| {
        let instance = t.push_instance.clone().unwrap_or_else(push::host_name);
        Pusher::new(gateway, &instance, Arc::clone(exporter))
    })
}

/// `once`: one cycle, one push, and the outcome as the exit code.
fn once(args: &RefreshArgs) -> u8 {
    let mut s = match start(args) {
        Ok(s) => s,
        Err(code) => return code,
    };
    let outcome = s.refresher.cycle();
    s.refresher.finish();
    // One push, synchronously; its failure is part of the exit code.
    let pushed = match pusher(args, &s.exporter) {
        None => true,
        Some(mut p) => match p.push_once() {
            Ok(()) => {
                info!(url = p.url(), "pushed the metrics");
                true
            }
            Err(e) => {
                error!(error = %e, "push failed");
                false
            }
        },
    };
    match outcome {
        CycleOutcome::Delivered { bytes } => {
            info!(bytes, "delivered one tested batch to each sink");
            if pushed { EXIT_OK } else { EXIT_FAILED }
        }
        CycleOutcome::NoBatch => fail(EXIT_FAILED, "no tested batch could be read from any source"),
        CycleOutcome::SinkFailed => fail(EXIT_FAILED, "a sink failed"),
        CycleOutcome::Stopped => fail(
            EXIT_FAILED,
            &format!(
                "{} before a batch was delivered",
                crate::source::stopped_by()
            ),
        ),
    }
}

/// `run`: the daemon, with the HTTP server and the push thread.
fn run(args: &RefreshArgs) -> u8 {
    // Bound while privileges are still held, so that a port below 1024 works.
    let listener = match args.telemetry.listen_address {
        ListenAddress::On(addr) => match http::bind(addr) {
            Ok(bound) => {
                if let Some(e) = &bound.fell_back {
                    warn!(listen_address = %addr, error = %e, "no IPv6 here: listening on IPv4 only");
                }
                Some(bound.listener)
            }
            Err(e) => {
                return fail(
                    EXIT_CONFIG,
                    &format!("--listen-address {addr}: cannot listen: {e}"),
                );
            }
        },
        ListenAddress::Off => None,
    };
    // Read while privileges are still held: the key may be root's alone.
    let (tls, users) = match web_config(args) {
        Ok(locked) => locked,
        Err(code) => return code,
    };
    let mut s = match start(args) {
        Ok(s) => s,
        Err(code) => return code,
    };
    if let Some(listener) = listener {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let basic_auth = users.is_some();
        let state = HttpState {
            exporter: Arc::clone(&s.exporter),
            status: Arc::clone(&s.status),
            liveness_limit: s.liveness_limit,
            users,
        };
        match http::spawn(listener, state, tls) {
            Ok(bound) => {
                info!(address = %bound, scheme, basic_auth, "serving /metrics, /healthz and /readyz")
            }
            Err(e) => {
                s.refresher.finish();
                return fail(EXIT_FAILED, &format!("cannot start the HTTP server: {e}"));
            }
        }
    }
    let push_every = args.telemetry.push_interval.unwrap_or(args.interval);
    let _push_loop = match pusher(args, &s.exporter).map(|p| {
        info!(url = p.url(), "pushing the metrics");
        p.spawn(push_every)
    }) {
        Some(Err(e)) => return fail(EXIT_FAILED, &format!("cannot start the push thread: {e}")),
        Some(Ok(l)) => Some(l),
        None => None,
    };
    let result = s.refresher.run(&s.requests, &s.stop);
    s.refresher.finish();
    s.refresher.log_statistics();
    match result {
        Ok(()) => {
            info!("stopped");
            EXIT_OK
        }
        Err(e) => fail(EXIT_FAILED, &e.to_string()),
    }
}

/// The metrics port's TLS and users from `--web-config-file`, if given;
/// a file that does not load stops the start (exit 2, one line).
fn web_config(
    args: &RefreshArgs,
) -> Result<
    (
        Option<http::TlsReloader>,
        Option<crate::telemetry::web_config::Users>,
    ),
    u8,
> {
    let Some(path) = &args.telemetry.web_config_file else {
        return Ok((None, None));
    };
    let shown = path.display();
    let refuse =
        |e: &dyn std::fmt::Display| fail(EXIT_CONFIG, &format!("--web-config-file {shown}: {e}"));
    let lock = crate::telemetry::web_config::load(path).map_err(|e| refuse(&e))?;
    if args.telemetry.listen_address == ListenAddress::Off {
        return Err(refuse(
            &"there is no server to lock: --listen-address is none",
        ));
    }
    if lock.tls.is_none() && lock.users.is_some() {
        warn!(
            "--web-config-file: basic auth without tls_server_config sends the passwords in the clear"
        );
    }
    Ok((lock.tls, lock.users))
}

/// `quarantine`: what the marker holds, and `--release` to lift it by hand.
fn quarantine(args: &crate::cli::QuarantineArgs) -> u8 {
    let kernel = KernelPaths::new(&args.kernel.proc_root, &args.kernel.sys_root);
    let mut q = match crate::kernel::Quarantine::open(&kernel, Some(&args.state.state_dir)) {
        Ok(q) => q,
        Err(e) => return fail(EXIT_CONFIG, &format!("quarantine: {e}")),
    };
    let held: Vec<(String, u32)> = q.held().map(|(r, v)| (r.to_string(), v)).collect();
    if held.is_empty() {
        println!("no hardware RNG is held in quarantine");
        return EXIT_OK;
    }
    let mut code = EXIT_OK;
    for (rng, quality) in held {
        if !args.release {
            println!("{rng}: held at rng_quality 0; {quality} is given back on release");
            continue;
        }
        match q.release(&rng) {
            Ok(_) => println!("{rng}: released, rng_quality {quality}"),
            Err(e) => {
                code = fail(
                    EXIT_FAILED,
                    &format!(
                        "{rng}: {e}; make it current with `echo {rng} > {}` and run again",
                        kernel.hw_random_dir().join("rng_current").display()
                    ),
                );
            }
        }
    }
    code
}

fn sources(args: &crate::cli::SourcesArgs) -> u8 {
    let kernel = KernelPaths::new(&args.kernel.proc_root, &args.kernel.sys_root);
    report(crate::inventory::print(
        &kernel,
        &args.hwrng.hwrng,
        std::io::stdout().lock(),
    ))
}

fn check(args: &CheckArgs) -> u8 {
    let stop = Arc::new(AtomicBool::new(false));
    // `rngtest < file` habits: data piped in is not read unless asked for.
    let piped =
        std::fs::metadata("/proc/self/fd/0").is_ok_and(|m| m.file_type().is_fifo() || m.is_file());
    if piped
        && !args
            .source
            .sources
            .contains(&crate::source::SourceSpec::Stdin)
    {
        let sources = list(&args.source.sources);
        info!("reading {sources}, not standard input: use --source - to test what is piped in");
    }
    // Signals end the check early with a report of what was read.
    let _requests = match watch_signals(Arc::clone(&stop)) {
        Ok(rx) => rx,
        Err(e) => return fail(EXIT_FAILED, &format!("cannot install signal handlers: {e}")),
    };
    // `check` applies no retry: the policy only says where `run` would
    // give a source up.
    let health = match args.source.health(crate::health::FailurePolicy::default()) {
        Ok(h) => h,
        Err(e) => return fail(EXIT_CONFIG, &e),
    };
    let reports = match crate::check::check(args, &health, &read_limits(&args.source, &stop, None))
    {
        Ok(r) => r,
        Err(e) => return fail(EXIT_CONFIG, &e.to_string()),
    };
    let written = report(crate::check::print(
        &reports,
        args.format,
        std::io::stdout().lock(),
    ));
    if written != EXIT_OK {
        return written;
    }
    let passed = |r: &crate::check::Report| match args.verdict {
        true => {
            r.verdict.passed
                && r.counts.blocks > 0
                && (args.blocks == 0 || r.counts.blocks == args.blocks)
        }
        false => r.passed(args.blocks),
    };
    if !reports.is_empty() && reports.iter().all(passed) {
        EXIT_OK
    } else {
        EXIT_FAILED
    }
}

/// The URL given, else the daemon's default address, over https when its
/// web configuration file (from the shared environment) turns TLS on.
fn probe_url(args: &crate::cli::ProbeArgs) -> String {
    if let Some(url) = &args.url {
        return url.clone();
    }
    let tls = args
        .web_config_file
        .as_deref()
        .and_then(|f| std::fs::read_to_string(f).ok())
        .and_then(|text| crate::telemetry::web_config::parse(&text, "/".as_ref()).ok())
        .is_some_and(|c| c.tls.is_some());
    let scheme = if tls { "https" } else { "http" };
    format!("{scheme}://127.0.0.1:9742/healthz")
}

/// `probe`: GET a URL and succeed on 200, for a container HEALTHCHECK.
/// An https:// URL is fetched without checking the certificate, as the
/// kubelet's HTTPS probe does: it asks the daemon on this host whether it
/// lives, it does not decide whom to trust.
fn probe(url: &str, timeout: std::time::Duration) -> u8 {
    let tls = ureq::tls::TlsConfig::builder()
        .provider(ureq::tls::TlsProvider::Rustls)
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .root_certs(ureq::tls::RootCerts::Specific(Arc::new(Vec::new())))
        .disable_verification(true)
        .build();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .tls_config(tls)
        .build()
        .into();
    match agent.get(url).call() {
        Ok(_) => EXIT_OK,
        Err(e) => fail(EXIT_FAILED, &format!("probe {url}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn refresh_args(extra: &[&str]) -> RefreshArgs {
        let line = ["random-refresher", "once", "--source", "/dev/null"];
        let cli = Cli::try_parse_args(line.iter().chain(extra)).unwrap();
        match cli.command {
            Command::Once(a) => a,
            _ => unreachable!(),
        }
    }

    #[test]
    fn retry_max_defaults_to_ten_minutes_or_retry_initial_and_a_shorter_one_is_refused() {
        let max = |extra: &[&str]| refresh_args(extra).health().map(|h| h.policy().retry_max);
        assert_eq!(max(&[]), Ok(Duration::from_secs(600)));
        assert_eq!(
            max(&["--retry-initial", "20m"]),
            Ok(Duration::from_secs(1200))
        );
        assert_eq!(
            max(&["--retry-initial", "1m", "--retry-max", "1m"]),
            Ok(Duration::from_secs(60))
        );
        assert_eq!(
            max(&["--retry-initial", "20m", "--retry-max", "1m"]),
            Err("--retry-max 1m is shorter than --retry-initial 20m".into())
        );
    }
}
