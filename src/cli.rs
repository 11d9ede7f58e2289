//! The command line. Every option also reads `RANDOM_REFRESHER_<OPTION>`, so
//! a pod spec can configure the daemon through its environment.
//!
//! The repeatable options (`--source`, `--sink`, `--metrics-label`) take
//! one value per flag, so a path or label value may hold a comma; their
//! environment variables hold a comma-separated list, split by
//! [`Cli::resolve`] after parsing.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::health::{BLOCK_BYTES, FailurePolicy, HealthConfig, HealthConfigError};
use crate::sink::SinkSpec;
use crate::source::SourceSpec;

#[derive(Debug, Parser)]
#[command(name = "random-refresher", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "RANDOM_REFRESHER_LOG_FORMAT")]
    pub log_format: LogFormat,

    /// Log filter (error, warn, info, debug, trace, or a RUST_LOG directive);
    /// overrides RUST_LOG.
    #[arg(long, global = true, env = "RANDOM_REFRESHER_LOG_LEVEL")]
    pub log_level: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Refresh on a timer until stopped (the daemon).
    Run(RefreshArgs),
    /// Run one refresh cycle and exit: 0 delivered, 1 failed, 2 misconfigured.
    Once(RefreshArgs),
    /// Health-test N blocks from a source and report, like rngtest.
    Check(CheckArgs),
    /// List the entropy sources this host offers and whether each is usable.
    Sources(SourcesArgs),
    /// GET the daemon's /healthz (or --url) and exit 0 if it answers 200:
    /// a container health check that needs no shell.
    Probe(ProbeArgs),
    /// Show the hwrng quarantine the daemon left, or lift it by hand.
    Quarantine(QuarantineArgs),
}

#[derive(Clone, Debug, Args)]
pub struct QuarantineArgs {
    /// Give every held device back the rng_quality recorded for it (each
    /// must be the current device when its quality is written).
    #[arg(long)]
    pub release: bool,

    #[command(flatten)]
    pub state: StateDirArgs,

    #[command(flatten)]
    pub kernel: KernelArgs,
}

#[derive(Clone, Debug, Args)]
pub struct ProbeArgs {
    /// The URL to GET; default http://127.0.0.1:9742/healthz, or https://
    /// when RANDOM_REFRESHER_WEB_CONFIG_FILE names a file with TLS (the
    /// environment a container's daemon and its HEALTHCHECK share).
    #[arg(long, env = "RANDOM_REFRESHER_PROBE_URL")]
    pub url: Option<String>,
    /// The daemon's web configuration file, for the default URL's scheme.
    #[arg(long, hide = true, env = "RANDOM_REFRESHER_WEB_CONFIG_FILE")]
    pub web_config_file: Option<std::path::PathBuf>,
    /// How long to wait for the answer.
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = positive_duration,
          env = "RANDOM_REFRESHER_PROBE_TIMEOUT")]
    pub timeout: Duration,
}

/// Metrics, health endpoints and Pushgateway.
#[derive(Clone, Debug, Args)]
pub struct TelemetryArgs {
    /// Address of the metrics and health server (`run` only), or `none`.
    /// The default, `[::]:9742`, takes IPv4 and IPv6, and IPv4 alone where
    /// the host has no IPv6.
    #[arg(long, value_name = "ADDR", default_value = "[::]:9742", value_parser = listen_address,
          env = "RANDOM_REFRESHER_LISTEN_ADDRESS")]
    pub listen_address: ListenAddress,

    /// Lock the metrics port (`run` only) with a web configuration file in
    /// the Prometheus exporter-toolkit format, node_exporter's
    /// --web.config.file: TLS certificate and key, optional client CA,
    /// basic-auth users with bcrypt hashes. /healthz and /readyz stay open.
    #[arg(long, value_name = "FILE", env = "RANDOM_REFRESHER_WEB_CONFIG_FILE")]
    pub web_config_file: Option<std::path::PathBuf>,

    /// Push the metrics to this Prometheus Pushgateway (http://host:9091).
    #[arg(long, value_name = "URL", value_parser = gateway_url, env = "RANDOM_REFRESHER_PUSH_GATEWAY")]
    pub push_gateway: Option<String>,

    /// Time between pushes (`run`); default: the refresh interval.
    #[arg(long, value_name = "DURATION", value_parser = positive_duration, env = "RANDOM_REFRESHER_PUSH_INTERVAL")]
    pub push_interval: Option<Duration>,

    /// The `instance` grouping label of pushes; default: the host name.
    #[arg(long, value_name = "NAME", value_parser = push_instance, env = "RANDOM_REFRESHER_PUSH_INSTANCE")]
    pub push_instance: Option<String>,

    /// A constant label on every metric, repeatable (node=$(NODE_NAME)).
    /// Also RANDOM_REFRESHER_METRICS_LABEL, comma-separated.
    #[arg(long = "metrics-label", value_name = "KEY=VALUE", value_parser = crate::telemetry::exporter::parse_label)]
    pub metrics_labels: Vec<(String, String)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListenAddress {
    Off,
    On(std::net::SocketAddr),
}

fn listen_address(s: &str) -> Result<ListenAddress, String> {
    if s == "none" {
        return Ok(ListenAddress::Off);
    }
    s.parse().map(ListenAddress::On).map_err(|_| {
        format!("`{s}` is not an address: expected IP:PORT (0.0.0.0:9742, [::]:9742) or none")
    })
}

fn gateway_url(s: &str) -> Result<String, String> {
    // Errors show the URL without its credentials.
    let shown = crate::telemetry::push::GatewayUrl::parse(s).url;
    let rest = s.strip_prefix("http://").ok_or_else(|| {
        format!("`{shown}` is not an http:// URL (this build pushes over plain HTTP; put TLS in a sidecar or proxy)")
    })?;
    if rest.is_empty() || rest.starts_with('/') || rest.starts_with('@') {
        return Err(format!(
            "`{shown}` names no host: expected http://HOST:PORT"
        ));
    }
    Ok(s.to_string())
}

fn push_instance(s: &str) -> Result<String, String> {
    if s.is_empty() || s.contains('/') {
        return Err(format!(
            "`{s}` cannot be an instance label: it must be non-empty and without `/`"
        ));
    }
    Ok(s.to_string())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
}

/// Where the host's kernel files are.
#[derive(Clone, Debug, Args)]
pub struct KernelArgs {
    /// Root of the host's procfs (in a pod, where the host's /proc is mounted).
    #[arg(long, default_value = "/proc", env = "RANDOM_REFRESHER_PROC_ROOT")]
    pub proc_root: PathBuf,
    /// Root of the host's sysfs.
    #[arg(long, default_value = "/sys", env = "RANDOM_REFRESHER_SYS_ROOT")]
    pub sys_root: PathBuf,
}

/// Where the quarantine marker lives: one definition for `run`, `once`
/// and `quarantine`.
#[derive(Clone, Debug, Args)]
pub struct StateDirArgs {
    /// Where the quarantine marker lives (it survives a crash).
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/run/random-refresher",
        env = "RANDOM_REFRESHER_STATE_DIR"
    )]
    pub state_dir: PathBuf,
}

/// The kernel's hwrng device node: one definition for `sources`, `run`
/// and `once`.
#[derive(Clone, Debug, Args)]
pub struct HwrngArgs {
    /// The kernel's hwrng device node (in a pod, /host/dev/hwrng). With
    /// --quarantine-hwrng, the source that is this same device (by device
    /// number) is the one judged.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/dev/hwrng",
        env = "RANDOM_REFRESHER_HWRNG"
    )]
    pub hwrng: PathBuf,
}

#[derive(Clone, Debug, Args)]
pub struct SourcesArgs {
    #[command(flatten)]
    pub hwrng: HwrngArgs,

    #[command(flatten)]
    pub kernel: KernelArgs,
}

/// Sources and the health tests on them.
#[derive(Clone, Debug, Args)]
pub struct SourceArgs {
    /// Entropy source, repeatable: a path (character device, FIFO or file),
    /// `-` for standard input, `rdseed` or `rdrand` (x86-64), `rndrrs` or
    /// `rndr` (AArch64). `run` and `once` read them in failover order;
    /// `check` tests each in turn. Also RANDOM_REFRESHER_SOURCE,
    /// comma-separated. [default: /dev/hwrng]
    #[arg(long = "source", value_name = "SPEC")]
    pub sources: Vec<SourceSpec>,

    /// Longest wait for the next byte from a source before the read fails.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = positive_duration,
          env = "RANDOM_REFRESHER_READ_TIMEOUT")]
    pub read_timeout: Duration,

    /// Claimed min-entropy H of the source in bits per byte, for the SP 800-90B
    /// RCT and APT cutoffs: at least N/512 for --alpha-exponent N (so that
    /// the APT can fire within its window), at most 8.
    #[arg(long, value_name = "BITS", default_value_t = 8.0, value_parser = min_entropy,
          env = "RANDOM_REFRESHER_MIN_ENTROPY")]
    pub min_entropy: f64,

    /// Samples (bytes) per SP 800-90B min-entropy assessment window: 4096
    /// to 64 MiB, with suffixes (64KiB, 1MiB); 1000000 is the size the
    /// standard asks for.
    #[arg(long, value_name = "SAMPLES", default_value = "1000000", value_parser = estimate_window,
          env = "RANDOM_REFRESHER_ESTIMATE_WINDOW")]
    pub estimate_window: usize,

    /// Which windows get the full SP 800-90B assessment (all ten estimators,
    /// about a thousand times what the health tests cost per byte): auto assesses
    /// the first window, then others within a time budget (2 % of one core
    /// in the daemon, half of check's time); N assesses one window in every
    /// N (1: every window); off assesses none.
    #[arg(long, value_name = "auto|N|off", default_value = "auto", value_parser = estimate_every,
          env = "RANDOM_REFRESHER_ESTIMATE_EVERY")]
    pub estimate_every: crate::health::estimate::Sampling,

    /// SP 800-90B false-alarm rate alpha = 2^-N for the RCT and APT (20 to 64).
    #[arg(long, value_name = "N", default_value_t = 40,
          value_parser = clap::value_parser!(u32).range(20..=64), env = "RANDOM_REFRESHER_ALPHA_EXPONENT")]
    pub alpha_exponent: u32,

    #[command(flatten)]
    pub kernel: KernelArgs,
}

impl SourceArgs {
    /// The one conversion of the health options into checked values, under
    /// `policy`; the error is one line naming the options.
    pub fn health(&self, policy: FailurePolicy) -> Result<HealthConfig, String> {
        let alpha_log2 = -f64::from(self.alpha_exponent);
        HealthConfig::new(
            self.min_entropy,
            alpha_log2,
            policy,
            self.estimate_window,
            self.estimate_every,
        )
        .map_err(|e| match e {
            HealthConfigError::RetryMax { max, initial } => format!(
                "--retry-max {} is shorter than --retry-initial {}",
                humantime::format_duration(max),
                humantime::format_duration(initial)
            ),
            HealthConfigError::Window(_) => format!("--estimate-window {e}"),
            HealthConfigError::MaxFailures => e.to_string(),
            HealthConfigError::Cutoffs(e) => format!(
                "--min-entropy {} --alpha-exponent {}: {e}",
                self.min_entropy, self.alpha_exponent
            ),
        })
    }
}

impl RefreshArgs {
    /// The health options with the retry options; `--retry-max` unset is
    /// 10 minutes, or `--retry-initial` when that is longer. A given
    /// `--retry-max` shorter than `--retry-initial` is refused, not raised.
    pub fn health(&self) -> Result<HealthConfig, String> {
        let initial = self.retry_initial;
        let default = FailurePolicy::default();
        let policy = FailurePolicy {
            retry_initial: initial,
            retry_max: self.retry_max.unwrap_or(default.retry_max.max(initial)),
            ..default
        };
        self.source.health(policy)
    }
}

#[derive(Clone, Debug, Args)]
pub struct RefreshArgs {
    #[command(flatten)]
    pub source: SourceArgs,

    /// Where tested bytes go, repeatable: `kernel` (credit and reseed; needs
    /// CAP_SYS_ADMIN), `mix` (mixed in, no credit), `file:PATH` (a seed
    /// file), `creditable-file:PATH` (a seed file marked for
    /// systemd-random-seed to credit at the next boot), `stdout`.
    /// Also RANDOM_REFRESHER_SINK, comma-separated. [default: kernel]
    #[arg(long = "sink", value_name = "SPEC")]
    pub sinks: Vec<SinkSpec>,

    /// The kernel's random device, written by the `kernel` and `mix` sinks.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/dev/random",
        env = "RANDOM_REFRESHER_RANDOM_DEVICE"
    )]
    pub random_device: PathBuf,

    /// Tested bytes delivered to each sink per cycle: a positive multiple of
    /// 2500 up to 1 GiB, in bytes or with a suffix (250kB, 25MB).
    #[arg(long, value_name = "BYTES", default_value_t = BLOCK_BYTES, value_parser = batch_size,
          env = "RANDOM_REFRESHER_BATCH_SIZE")]
    pub batch_size: usize,

    /// Pause between the cycles of `run` (30s, 5m, 1h); a shutdown signal
    /// ends it at once.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = positive_duration,
          env = "RANDOM_REFRESHER_INTERVAL")]
    pub interval: Duration,

    /// Entropy credited per delivered byte by the `kernel` sink, 0 to 8
    /// bits, or `auto`: the source's claim (as by default) but never more
    /// than its min-entropy estimate, and nothing before its first estimate.
    /// Default: 8 for device paths and rdseed, 1/32 for rdrand.
    #[arg(long, value_name = "BITS|auto", value_parser = entropy_per_byte, env = "RANDOM_REFRESHER_ENTROPY_PER_BYTE")]
    pub entropy_per_byte: Option<crate::source::Credit>,

    /// Credit this FIFO, pipe or standard-input source (as given to
    /// --source, `-` for standard input), repeatable. Without it such a
    /// source is delivered but credited nothing: whoever writes into it
    /// chooses the bytes, a replayed capture included. Devices and CPU
    /// instructions are credited by default; regular files never.
    #[arg(long = "credit-stream", value_name = "SOURCE")]
    pub credit_streams: Vec<crate::source::SourceSpec>,

    /// Consecutive failed cycles after which `run` exits non-zero, so that the
    /// kubelet restarts it and the restart shows.
    #[arg(long, value_name = "N", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..), env = "RANDOM_REFRESHER_MAX_FAILED_CYCLES")]
    pub max_failed_cycles: u32,

    /// First wait before a failed source is tried again; doubles on each
    /// failed retry up to --retry-max.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = positive_duration,
          env = "RANDOM_REFRESHER_RETRY_INITIAL")]
    pub retry_initial: Duration,

    /// Longest wait between retries of a failed source, no shorter than
    /// --retry-initial. Default: 10m, or --retry-initial when that is longer.
    #[arg(long, value_name = "DURATION", value_parser = positive_duration,
          env = "RANDOM_REFRESHER_RETRY_MAX")]
    pub retry_max: Option<Duration>,

    /// While the hwrng source fails its health tests, set the kernel's
    /// rng_quality to 0 so that the kernel stops crediting the device too.
    #[arg(long, env = "RANDOM_REFRESHER_QUARANTINE_HWRNG")]
    pub quarantine_hwrng: bool,

    /// Hold the current hwrng's rng_quality at 0 while the daemon runs,
    /// passing or not, so that the kernel credits only bytes this daemon
    /// tested (for kernels booted without rng_core.default_quality=0). Given
    /// back at a clean exit.
    #[arg(long, env = "RANDOM_REFRESHER_HOLD_HWRNG_QUALITY")]
    pub hold_hwrng_quality: bool,

    #[command(flatten)]
    pub hwrng: HwrngArgs,

    #[command(flatten)]
    pub state: StateDirArgs,

    /// Once started as root, switch to this user, keeping only the
    /// capabilities the sinks need.
    #[arg(long, value_name = "UID[:GID]", env = "RANDOM_REFRESHER_USER")]
    pub user: Option<crate::privileges::User>,

    #[command(flatten)]
    pub telemetry: TelemetryArgs,
}

#[derive(Clone, Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub source: SourceArgs,

    /// Blocks of 2500 bytes to test; 0 tests until the source ends or a signal.
    #[arg(
        long,
        short = 'c',
        value_name = "N",
        default_value_t = 0,
        env = "RANDOM_REFRESHER_BLOCKS"
    )]
    pub blocks: u64,

    /// Report format.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text, env = "RANDOM_REFRESHER_FORMAT")]
    pub format: ReportFormat,

    /// Threads that test blocks; the counts are the same for any number.
    /// Default: the CPUs this process may run on.
    #[arg(
        long,
        short = 'j',
        value_name = "N",
        env = "RANDOM_REFRESHER_JOBS",
        value_parser = clap::value_parser!(u16).range(1..=MAX_JOBS as i64)
    )]
    pub jobs: Option<u16>,

    /// Significant bits in each sample (1 to 8), for the min-entropy
    /// assessment of a source whose samples are narrower than a byte (one
    /// sample per byte, in its low bits), as NIST's ea_non_iid takes it.
    #[arg(long, value_name = "N", default_value_t = 8, env = "RANDOM_REFRESHER_BITS_PER_SAMPLE",
          value_parser = clap::value_parser!(u8).range(1..=8))]
    pub bits_per_sample: u8,

    /// Exit 0 or 1 by the verdict instead of rngtest's rule (1 on any
    /// failing block): fail only when the failures are unlikely, below
    /// --false-alarm-bound, from a good source (good data fails FIPS 140-2
    /// about once in 1,200 blocks).
    #[arg(long, env = "RANDOM_REFRESHER_VERDICT")]
    pub verdict: bool,

    /// The verdict's false-alarm bound: the chance that a good source is
    /// judged bad, 1e-12 to 0.5.
    #[arg(long, value_name = "P", default_value_t = crate::check::verdict::DEFAULT_BOUND,
          value_parser = false_alarm_bound, env = "RANDOM_REFRESHER_FALSE_ALARM_BOUND")]
    pub false_alarm_bound: f64,
}

fn false_alarm_bound(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(p) if (1e-12..=0.5).contains(&p) => Ok(p),
        _ => Err(format!("`{s}` is not a probability from 1e-12 to 0.5")),
    }
}

/// More threads than this would only hold more memory (1 MB each).
pub const MAX_JOBS: usize = 256;

impl CheckArgs {
    /// `--jobs`, or the CPUs in this process's affinity mask and cgroup
    /// quota (`std::thread::available_parallelism` reads both).
    pub fn jobs(&self) -> usize {
        match self.jobs {
            Some(n) => usize::from(n),
            None => std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(MAX_JOBS),
        }
    }
}

/// The longest duration any option takes: long enough for any schedule,
/// short enough that sums of several (interval + read timeout + margin)
/// and deadlines from now stay representable.
pub const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

impl Cli {
    /// Parses `args` (the program name first) as the binary does, without
    /// exiting: for tests and fuzzing. The error is clap's message or the
    /// one line [`Cli::resolve`] gives.
    pub fn try_parse_args<I, T>(args: I) -> Result<Self, String>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let matches = <Self as clap::CommandFactory>::command()
            .try_get_matches_from(args)
            .map_err(|e| e.to_string())?;
        Self::from_matches(&matches)
    }

    /// The command line from clap's matches, as the binary takes it:
    /// `once` refuses the options only `run` uses, then [`Cli::resolve`].
    /// The error is one line naming the option.
    pub fn from_matches(matches: &clap::ArgMatches) -> Result<Self, String> {
        if let Some(("once", once)) = matches.subcommand() {
            refuse_run_only(once)?;
        }
        <Self as clap::FromArgMatches>::from_arg_matches(matches)
            .map_err(|e| e.to_string())?
            .resolve()
    }

    /// Fills the repeatable options that were not given on the command
    /// line from their environment variable (split at commas) or their
    /// default, and checks the metric labels as a set. The error is one
    /// line naming the option.
    pub fn resolve(mut self) -> Result<Self, String> {
        let (source, refresh) = match &mut self.command {
            Command::Run(a) | Command::Once(a) => (None, Some(a)),
            Command::Check(a) => (Some(&mut a.source), None),
            _ => (None, None),
        };
        if let Some(s) = source {
            repeatable(
                &mut s.sources,
                "RANDOM_REFRESHER_SOURCE",
                "/dev/hwrng",
                str::parse,
            )?;
        }
        if let Some(r) = refresh {
            let s = &mut r.source.sources;
            repeatable(s, "RANDOM_REFRESHER_SOURCE", "/dev/hwrng", str::parse)?;
            repeatable(&mut r.sinks, "RANDOM_REFRESHER_SINK", "kernel", str::parse)?;
            let labels = &mut r.telemetry.metrics_labels;
            repeatable(labels, "RANDOM_REFRESHER_METRICS_LABEL", "", |s| {
                crate::telemetry::exporter::parse_label(s)
            })?;
            crate::telemetry::exporter::check_labels(labels)
                .map_err(|e| format!("--metrics-label: {e}"))?;
        }
        Ok(self)
    }
}

/// The options `once` shares with `run` through [`RefreshArgs`] but has no
/// use for: it runs one cycle, serves nothing and pushes once.
const RUN_ONLY: [&str; 5] = [
    "interval",
    "max_failed_cycles",
    "listen_address",
    "web_config_file",
    "push_interval",
];

/// Refuses a run-only option given to `once` on its command line. From the
/// environment they are let be: a CronJob's `once` may share the
/// DaemonSet's environment.
fn refuse_run_only(once: &clap::ArgMatches) -> Result<(), String> {
    for id in RUN_ONLY {
        if once.value_source(id) == Some(clap::parser::ValueSource::CommandLine) {
            let option = id.replace('_', "-");
            return Err(format!(
                "--{option} is for `run`: `once` runs one cycle and exits"
            ));
        }
    }
    Ok(())
}

/// A repeatable option's values: as given, else its environment variable's
/// comma-separated list, else `default` (none when empty).
fn repeatable<T>(
    given: &mut Vec<T>,
    var: &str,
    default: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<(), String> {
    if !given.is_empty() {
        return Ok(());
    }
    let list = std::env::var(var).unwrap_or_else(|_| default.to_string());
    for item in list.split(',').filter(|s| !s.is_empty()) {
        given.push(parse(item).map_err(|e| format!("{var}: `{item}`: {e}"))?);
    }
    Ok(())
}

fn positive_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("{e}; expected a duration such as 500ms, 30s or 5m"))?;
    if d.is_zero() {
        return Err("must be longer than zero, such as 30s".into());
    }
    if d > MAX_DURATION {
        return Err("must be at most 30 days (30d)".into());
    }
    Ok(d)
}

/// Bytes, with the usual suffixes (`25MB`, `250kB`, `1MiB`): decimal ones
/// give the multiples of 2500 that a batch must be; for any other value the
/// error names the nearest ones.
fn batch_size(s: &str) -> Result<usize, String> {
    let n = parse_size::parse_size(s)
        .map_err(|_| format!("`{s}` is not a number of bytes (such as 2500, 250kB or 25MB)"))?;
    crate::refresher::batch_size(n)
}

fn entropy_per_byte(s: &str) -> Result<crate::source::Credit, String> {
    match s {
        "auto" => Ok(crate::source::Credit::Auto),
        _ => {
            let bits: f64 = s
                .parse()
                .map_err(|_| format!("`{s}` is not a number of bits, or auto"))?;
            crate::source::Credit::bits(bits).map_err(|e| format!("{e}, or auto"))
        }
    }
}

fn estimate_window(s: &str) -> Result<usize, String> {
    let n = parse_size::parse_size(s)
        .map_err(|_| format!("`{s}` is not a number of samples (such as 1000000 or 64KiB)"))?;
    crate::health::estimate::window_size(n).map_err(|e| e.to_string())
}

fn estimate_every(s: &str) -> Result<crate::health::estimate::Sampling, String> {
    use crate::health::estimate::Sampling;
    match s {
        "auto" => Ok(Sampling::Budget),
        "off" => Ok(Sampling::Off),
        _ => match s.parse::<u32>() {
            Ok(n @ 1..=1_000_000) => Ok(Sampling::Every(n)),
            _ => Err(format!(
                "`{s}` is not auto, off or a number from 1 to 1000000"
            )),
        },
    }
}

fn min_entropy(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of bits"))?;
    match v > 0.0 && v <= 8.0 {
        true => Ok(v),
        false => Err(format!(
            "{v} is not a min-entropy: a byte holds more than 0 and at most 8 bits"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn batch_size_must_be_whole_blocks_and_takes_suffixes() {
        assert_eq!(batch_size("27500"), Ok(27500));
        assert_eq!(batch_size("25MB"), Ok(25_000_000));
        assert_eq!(batch_size("250kB"), Ok(250_000));
        assert!(batch_size("2501").unwrap_err().contains("use 2500 or 5000"));
        // Only sizes that are accepted are suggested: no 0, nothing past 1 GiB.
        assert!(batch_size("1000").unwrap_err().ends_with("use 2500"));
        assert!(batch_size("1GiB").unwrap_err().ends_with("use 1073740000"));
        for n in ["1", "1000", "2501", "1GiB", "1073741823"] {
            let e = batch_size(n).unwrap_err();
            for suggested in e.rsplit(": use ").next().unwrap().split(" or ") {
                assert!(batch_size(suggested).is_ok(), "{n}: {e}");
            }
        }
        assert!(batch_size("1MiB").unwrap_err().contains("multiple of 2500"));
        assert!(batch_size("2G").unwrap_err().contains("outside"));
        assert!(batch_size("0").is_err());
        assert!(
            batch_size("lots")
                .unwrap_err()
                .contains("not a number of bytes")
        );
    }

    #[test]
    fn source_help_names_every_kind_and_what_each_command_does_with_several() {
        use clap::CommandFactory;
        let mut cli = Cli::command();
        for name in ["run", "once", "check"] {
            let help = cli
                .find_subcommand_mut(name)
                .unwrap()
                .render_help()
                .to_string()
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            for kind in ["`rdseed`", "`rdrand`", "`rndrrs`", "`rndr`", "`-`"] {
                assert!(help.contains(kind), "{name} --help lacks {kind}: {help}");
            }
            assert!(
                help.contains("`check` tests each in turn"),
                "{name}: {help}"
            );
            assert!(
                !help.contains("repeatable, in failover order"),
                "{name}: {help}"
            );
        }
    }

    #[test]
    fn once_refuses_the_options_only_run_uses() {
        for (option, value) in [
            ("--interval", "5m"),
            ("--max-failed-cycles", "3"),
            ("--listen-address", "none"),
            ("--push-interval", "1m"),
        ] {
            let e = Cli::try_parse_args(["random-refresher", "once", option, value]).unwrap_err();
            assert!(e.starts_with(option) && e.contains("for `run`"), "{e}");
            assert!(!e.contains('\n'), "{e}");
            let run = Cli::try_parse_args(["random-refresher", "run", option, value]);
            assert!(run.is_ok(), "{option}: {run:?}");
        }
        // What both use is taken by both.
        assert!(Cli::try_parse_args(["random-refresher", "once", "--batch-size", "5000"]).is_ok());
    }

    #[test]
    fn a_claimed_min_entropy_is_above_0_and_at_most_8_bits() {
        assert_eq!(min_entropy("8"), Ok(8.0));
        assert_eq!(min_entropy("0.5"), Ok(0.5));
        for bad in ["0", "-1", "8.01", "NaN", "inf"] {
            let e = min_entropy(bad).unwrap_err();
            assert!(e.contains("at most 8"), "{bad}: {e}");
        }
        assert!(min_entropy("lots").unwrap_err().contains("`lots`"));
    }

    #[test]
    fn durations_parse_and_zero_and_huge_are_refused() {
        assert_eq!(positive_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(positive_duration("30d"), Ok(MAX_DURATION));
        for bad in [
            "0s",
            "soon",
            "31d",
            "300000000000y",
            "18446744073709551615s",
        ] {
            assert!(positive_duration(bad).is_err(), "{bad}");
        }
    }
}
