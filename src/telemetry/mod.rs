//! What the daemon shows: metric names and descriptions, and (with the
//! exporter) the HTTP server and Pushgateway client.

pub mod exporter;
pub mod http;
pub mod names;
pub mod push;
pub mod source_metrics;
pub mod systemd;
pub mod web_config;

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use names::*;

/// Where metric handles come from. The process installs no global
/// recorder: every constructor that makes a handle is given a `Registry`,
/// and the one that renders is made by [`exporter::Exporter::new`], so
/// a handle cannot be made before the exporter, or against whatever
/// recorder happens to be installed.
#[derive(Clone)]
pub struct Registry(std::sync::Arc<dyn metrics::Recorder + Send + Sync>);

impl Registry {
    /// A registry whose handles count into nothing: for benchmarks and
    /// tests that do not look at metrics, said so where it is used.
    pub fn discarding() -> Self {
        Self(std::sync::Arc::new(metrics::NoopRecorder))
    }

    /// Runs `make` with this registry's recorder: the `metrics` macros
    /// inside it register their handles here.
    pub fn make<T>(&self, make: impl FnOnce() -> T) -> T {
        metrics::with_local_recorder(&*self.0, make)
    }
}

/// Registers HELP text and units, in the registry [`Registry::make`] runs
/// this in: descriptions given to no recorder are lost.
fn describe() {
    describe_gauge!(
        MIN_ENTROPY_ESTIMATE,
        "The source's assessed SP 800-90B min-entropy (min(H_original, 8 x H_bitstring) over all ten estimators) of its newest assessed window, in bits per byte; NaN before the first."
    );
    describe_gauge!(
        MIN_ENTROPY_ESTIMATOR,
        "Each SP 800-90B estimator's figure for the newest assessed window, by track: bits per byte on the literal track, bits per bit on the bitstring track."
    );
    describe_histogram!(
        MIN_ENTROPY_ASSESSMENT_DURATION,
        Unit::Seconds,
        "Time one window's min-entropy assessment took, on its own thread."
    );
    describe_gauge!(
        MIN_ENTROPY_CLAIMED,
        "The min-entropy claimed for the source (--min-entropy), in bits per byte."
    );
    describe_gauge!(
        BUILD_INFO,
        "Always 1; the version, commit and target labels say which build runs."
    );
    describe_counter!(
        SOURCE_BYTES_READ,
        Unit::Bytes,
        "Bytes read from each source, tested or not."
    );
    describe_counter!(
        SOURCE_READ_ERRORS,
        "Failed reads or opens of each source, by kind of error."
    );
    describe_gauge!(
        SOURCE_UP,
        "1 while the source is open and trusted by the health policy, else 0."
    );
    describe_gauge!(
        SOURCE_AVAILABLE,
        "0 while nothing was read from the source since start and it is not on this machine (no such device, no driver, an instruction the CPU lacks), else 1."
    );
    describe_histogram!(
        SOURCE_READ_DURATION,
        Unit::Seconds,
        "Time spent reading one batch from the source."
    );
    describe_counter!(HEALTH_BLOCKS, "2500-byte blocks health-tested, by result.");
    describe_counter!(HEALTH_TEST_FAILURES, "Blocks that failed each health test.");
    describe_counter!(
        SINK_BYTES,
        Unit::Bytes,
        "Tested bytes delivered to each sink."
    );
    describe_counter!(SINK_ERRORS, "Failed deliveries to each sink.");
    describe_counter!(
        ENTROPY_CREDITED_BYTES,
        Unit::Bytes,
        "Entropy credited to the kernel pool, in bytes of full entropy (bits / 8)."
    );
    describe_counter!(
        KERNEL_RESEEDS,
        "Reseeds of the kernel CRNG forced after a delivery."
    );
    describe_counter!(
        KERNEL_RESEEDS_SKIPPED,
        "Deliveries to the kernel sink whose reseed was skipped because the CRNG was not ready yet (RNDRESEEDCRNG: ENODATA); their bytes were added and credited."
    );
    describe_gauge!(
        KERNEL_CRNG_READY,
        "1 once the kernel's CRNG is ready (getrandom with GRND_NONBLOCK gives bytes), 0 before."
    );
    describe_gauge!(
        KERNEL_CRNG_READY_BOOT_SECONDS,
        Unit::Seconds,
        "Seconds after boot (CLOCK_BOOTTIME) at which the daemon saw the CRNG become ready; NaN if it was ready when the daemon started."
    );
    describe_counter!(CYCLES, "Refresh cycles, by result.");
    describe_gauge!(
        LAST_REFRESH_TIMESTAMP,
        Unit::Seconds,
        "Unix time of the last cycle that delivered a tested batch."
    );
    describe_gauge!(
        KERNEL_ENTROPY_AVAILABLE,
        Unit::Bytes,
        "The kernel's entropy_avail, in bytes (bits / 8)."
    );
    describe_gauge!(
        KERNEL_POOL_SIZE,
        Unit::Bytes,
        "The kernel's poolsize, in bytes (bits / 8)."
    );
    describe_gauge!(
        HWRNG_QUALITY,
        "The kernel's rng_quality for its current hardware RNG (0 to 1024)."
    );
    describe_gauge!(
        HWRNG_CURRENT_INFO,
        "1 for the hardware RNG the kernel reads (rng_current)."
    );
    describe_gauge!(
        HWRNG_QUARANTINED,
        "1 while the daemon holds the hardware RNG's rng_quality at 0."
    );
    describe_counter!(
        HWRNG_QUARANTINE_MARKER_ERRORS,
        "Quarantines whose marker could not be written: the device was held at 0 all the same, but the hold does not outlive the process."
    );
    describe_counter!(PUSH_ERRORS, "Failed pushes to the Pushgateway.");
}

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

/// The loop's progress as the health endpoints see it: written by the loop,
/// read by the HTTP server, shared through an `Arc` (no globals).
#[derive(Debug)]
pub struct LoopStatus {
    started: Instant,
    /// Milliseconds since `started` of the loop's last sign of life.
    heartbeat_ms: AtomicU64,
    delivered_once: AtomicBool,
    source_healthy: AtomicBool,
    /// systemd's readiness and watchdog, fed from the same progress.
    systemd: systemd::Notifier,
}

impl Default for LoopStatus {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            heartbeat_ms: AtomicU64::new(0),
            delivered_once: AtomicBool::new(false),
            source_healthy: AtomicBool::new(false),
            systemd: systemd::Notifier::from_env(),
        }
    }
}

impl crate::source::Heartbeat for LoopStatus {
    fn beat(&self) {
        LoopStatus::beat(self)
    }
}

impl LoopStatus {
    pub fn beat(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.heartbeat_ms.store(ms, Ordering::Relaxed);
        self.systemd.progress();
    }

    pub fn cycle_finished(&self, ok: bool, source_healthy: bool) {
        self.beat();
        self.source_healthy.store(source_healthy, Ordering::Relaxed);
        if ok && !self.delivered_once.swap(true, Ordering::Relaxed) {
            self.systemd.ready("delivering tested bytes");
        }
    }

    /// The loop is waiting for its next cycle, as it should: feed systemd's
    /// watchdog (not the liveness heartbeat, which allows for the wait).
    pub fn waiting(&self) {
        self.systemd.progress();
    }

    /// How often a waiting loop should call [`Self::waiting`], if at all.
    pub fn waiting_ping_every(&self) -> Option<std::time::Duration> {
        self.systemd.ping_every()
    }

    /// Time since the loop last showed progress.
    pub fn since_heartbeat(&self) -> std::time::Duration {
        let beat = std::time::Duration::from_millis(self.heartbeat_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(beat)
    }

    pub fn delivered_once(&self) -> bool {
        self.delivered_once.load(Ordering::Relaxed)
    }

    pub fn source_healthy(&self) -> bool {
        self.source_healthy.load(Ordering::Relaxed)
    }
}

/// Seconds since the Unix epoch, for timestamps in metrics.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}
