//! Metric names: a contract with the chart's alerts and dashboard, so they
//! live in one place and a rename is a visible change.
//!
//! Entropy is counted in bytes (bits / 8), not bits: Prometheus names carry
//! base units, and `promtool check metrics` rejects `_bits`.

pub const BUILD_INFO: &str = "random_refresher_build_info";
pub const SOURCE_BYTES_READ: &str = "random_refresher_source_bytes_read_total";
pub const SOURCE_READ_ERRORS: &str = "random_refresher_source_read_errors_total";
pub const SOURCE_UP: &str = "random_refresher_source_up";
pub const SOURCE_AVAILABLE: &str = "random_refresher_source_available";
pub const SOURCE_READ_DURATION: &str = "random_refresher_source_read_duration_seconds";
pub const HEALTH_BLOCKS: &str = "random_refresher_health_blocks_total";
pub const HEALTH_TEST_FAILURES: &str = "random_refresher_health_test_failures_total";
pub const SINK_BYTES: &str = "random_refresher_sink_bytes_total";
pub const SINK_ERRORS: &str = "random_refresher_sink_errors_total";
pub const ENTROPY_CREDITED_BYTES: &str = "random_refresher_entropy_credited_bytes_total";
pub const KERNEL_CRNG_READY: &str = "random_refresher_kernel_crng_ready";
pub const KERNEL_CRNG_READY_BOOT_SECONDS: &str =
    "random_refresher_kernel_crng_ready_boot_time_seconds";
pub const KERNEL_RESEEDS: &str = "random_refresher_kernel_reseeds_total";
pub const KERNEL_RESEEDS_SKIPPED: &str = "random_refresher_kernel_reseeds_skipped_total";
pub const CYCLES: &str = "random_refresher_cycles_total";
pub const LAST_REFRESH_TIMESTAMP: &str = "random_refresher_last_refresh_timestamp_seconds";
pub const KERNEL_ENTROPY_AVAILABLE: &str = "random_refresher_kernel_entropy_available_bytes";
pub const KERNEL_POOL_SIZE: &str = "random_refresher_kernel_pool_size_bytes";
pub const HWRNG_QUALITY: &str = "random_refresher_hwrng_quality";
pub const HWRNG_CURRENT_INFO: &str = "random_refresher_hwrng_current_info";
pub const HWRNG_QUARANTINED: &str = "random_refresher_hwrng_quarantined";
pub const HWRNG_QUARANTINE_MARKER_ERRORS: &str =
    "random_refresher_hwrng_quarantine_marker_errors_total";
pub const PUSH_ERRORS: &str = "random_refresher_push_errors_total";
pub const MIN_ENTROPY_ESTIMATE: &str = "random_refresher_min_entropy_estimate_per_byte";
pub const MIN_ENTROPY_ESTIMATOR: &str = "random_refresher_min_entropy_estimator_per_symbol";
pub const MIN_ENTROPY_ASSESSMENT_DURATION: &str =
    "random_refresher_min_entropy_assessment_duration_seconds";
pub const MIN_ENTROPY_CLAIMED: &str = "random_refresher_min_entropy_claimed_per_byte";
