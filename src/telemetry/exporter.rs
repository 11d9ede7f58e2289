//! The Prometheus recorder, and rendering with fresh kernel and process
//! readings.
//!
//! The exporter crate's own HTTP listener is not used: it answers every path
//! with the metrics, so a readiness probe aimed at it could never fail. The
//! recorder renders into our server and our Pushgateway client instead.

use std::sync::Mutex;

use metrics::gauge;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

use super::{Registry, names};
use crate::kernel::KernelPaths;

/// Buckets of the per-batch read duration, from a fast file to a slow TPM.
const READ_DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Buckets of one window's min-entropy assessment, from a small window on a
/// fast core to a full one on a slow core.
const ASSESSMENT_DURATION_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

pub struct Exporter {
    handle: PrometheusHandle,
    registry: Registry,
    process: metrics_process::Collector,
    kernel: KernelPaths,
    /// The `rng` label last exported as current, to zero it when it changes.
    current_rng: Mutex<Option<String>>,
}

impl Exporter {
    /// Builds the recorder, with constant labels on every series, and
    /// describes the metrics. It is not installed process-wide: handles
    /// come from [`Exporter::registry`].
    pub fn new(labels: &[(String, String)], kernel: KernelPaths) -> Result<Self, BuildError> {
        let mut builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full(names::SOURCE_READ_DURATION.into()),
                READ_DURATION_BUCKETS,
            )?
            .set_buckets_for_metric(
                Matcher::Full(names::MIN_ENTROPY_ASSESSMENT_DURATION.into()),
                ASSESSMENT_DURATION_BUCKETS,
            )?;
        for (k, v) in labels {
            builder = builder.add_global_label(k, v);
        }
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        let registry = Registry(std::sync::Arc::new(recorder));
        let process = metrics_process::Collector::default();
        registry.make(|| {
            super::describe();
            process.describe();
            gauge!(
                names::BUILD_INFO,
                "version" => env!("CARGO_PKG_VERSION"),
                "commit" => env!("RANDOM_REFRESHER_GIT_COMMIT"),
                "target" => env!("RANDOM_REFRESHER_TARGET"),
            )
            .set(1.0);
        });
        let exporter = Self {
            handle,
            registry,
            process,
            kernel,
            current_rng: Mutex::new(None),
        };
        exporter.refresh_readings();
        Ok(exporter)
    }

    /// Where every other part of the daemon makes its metric handles.
    pub fn registry(&self) -> Registry {
        self.registry.clone()
    }

    /// Reads the kernel's counters and this process's usage into gauges.
    pub fn refresh_readings(&self) {
        self.registry.make(|| self.read_into_gauges());
    }

    fn read_into_gauges(&self) {
        let r = self.kernel.read();
        if let Some(v) = r.entropy_avail_bits {
            gauge!(names::KERNEL_ENTROPY_AVAILABLE).set(v as f64 / 8.0);
        }
        if let Some(v) = r.poolsize_bits {
            gauge!(names::KERNEL_POOL_SIZE).set(v as f64 / 8.0);
        }
        let mut current = self.current_rng.lock().unwrap_or_else(|e| e.into_inner());
        if *current != r.rng_current {
            if let Some(old) = current.take() {
                gauge!(names::HWRNG_CURRENT_INFO, "rng" => old.clone()).set(0.0);
                gauge!(names::HWRNG_QUALITY, "rng" => old).set(0.0);
            }
            *current = r.rng_current.clone();
        }
        if let Some(rng) = current.as_ref() {
            gauge!(names::HWRNG_CURRENT_INFO, "rng" => rng.clone()).set(1.0);
            if let Some(q) = r.rng_quality {
                gauge!(names::HWRNG_QUALITY, "rng" => rng.clone()).set(f64::from(q));
            }
        }
        drop(current);
        self.process.collect();
    }

    /// The Prometheus text format, with readings taken now, in a stable
    /// order (the recorder's own order changes from scrape to scrape).
    pub fn render(&self) -> String {
        self.refresh_readings();
        sorted(&self.handle.render())
    }

    /// Drains histogram buckets; the loop calls it once a cycle.
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }
}

/// Families (blank-line separated) sorted by name, and the samples in each
/// by series; the sort is stable and ignores `le`, so a histogram's buckets
/// keep their rising order.
fn sorted(text: &str) -> String {
    let mut families: Vec<(String, Vec<&str>)> = text
        .split("\n\n")
        .filter(|f| !f.trim().is_empty())
        .map(|family| {
            let (comments, mut samples): (Vec<&str>, Vec<&str>) =
                family.lines().partition(|l| l.starts_with('#'));
            samples.sort_by_key(|l| without_le(l));
            let name = samples
                .first()
                .or(comments.last())
                .map(|l| {
                    l.trim_start_matches("# TYPE ")
                        .trim_start_matches("# HELP ")
                })
                .unwrap_or("")
                .split(['{', ' '])
                .next()
                .unwrap_or("")
                .to_string();
            (name, comments.into_iter().chain(samples).collect())
        })
        .collect();
    families.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = String::with_capacity(text.len());
    for (_, lines) in families {
        for l in lines {
            out.push_str(l);
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

fn without_le(sample: &str) -> String {
    match sample.find("le=\"") {
        Some(at) => {
            let end = sample[at + 4..]
                .find('"')
                .map_or(sample.len(), |e| at + 5 + e);
            format!("{}{}", &sample[..at], &sample[end..])
        }
        None => sample.to_string(),
    }
}

/// Parses a `--metrics-label` value.
/// Label names the daemon's own series carry, or that Prometheus and the
/// Pushgateway give a meaning: a constant label of the same name would
/// clash with them.
pub const RESERVED_LABELS: [&str; 11] = [
    "le", "quantile", "source", "sink", "test", "result", "kind", "rng", "version", "job",
    "instance",
];

/// The constant labels as a set: no reserved name, no name twice.
pub fn check_labels(labels: &[(String, String)]) -> Result<(), String> {
    for (i, (k, _)) in labels.iter().enumerate() {
        if RESERVED_LABELS.contains(&k.as_str()) {
            return Err(format!(
                "`{k}` is a label the daemon or Prometheus sets itself"
            ));
        }
        if labels[..i].iter().any(|(seen, _)| seen == k) {
            return Err(format!("`{k}` is given twice"));
        }
    }
    Ok(())
}

pub fn parse_label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not KEY=VALUE"))?;
    let valid_key = !k.is_empty()
        && !k.starts_with("__")
        && k.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid_key {
        return Err(format!(
            "`{k}` is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)"
        ));
    }
    Ok((k.to_string(), v.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Handles come from the exporter's registry and from nowhere else: a
    /// handle made with the bare macro, as the daemon once made them in its
    /// constructors, reaches no exporter.
    #[test]
    fn only_handles_made_in_the_exporters_registry_are_rendered() {
        let kernel = KernelPaths::new("/nonexistent".as_ref(), "/nonexistent".as_ref());
        let exporter = Exporter::new(&[("node".into(), "n1".into())], kernel).unwrap();
        let made = exporter
            .registry()
            .make(|| metrics::counter!(names::CYCLES, "result" => "ok"));
        made.increment(3);
        metrics::counter!(names::CYCLES, "result" => "failed").increment(5);
        Registry::discarding()
            .make(|| metrics::counter!(names::SINK_ERRORS, "sink" => "stdout"))
            .increment(1);
        let text = exporter.render();
        let cycles = names::CYCLES;
        assert!(
            text.contains(&format!("{cycles}{{node=\"n1\",result=\"ok\"}} 3")),
            "{text}"
        );
        assert!(!text.contains("result=\"failed\""), "{text}");
        assert!(!text.contains(names::SINK_ERRORS), "{text}");
        assert!(
            text.contains(&format!("# HELP {cycles}")),
            "described: {text}"
        );
        assert!(text.contains(names::BUILD_INFO), "{text}");
    }

    #[test]
    fn labels_parse() {
        assert_eq!(
            parse_label("node=worker-1"),
            Ok(("node".into(), "worker-1".into()))
        );
        assert_eq!(parse_label("zone=a=b"), Ok(("zone".into(), "a=b".into())));
        assert!(parse_label("node").is_err());
        assert!(parse_label("1node=x").is_err());
        assert!(parse_label("__name__=x").is_err());
    }
}
