//! Each source's metrics, fed by the pool through [`SourceObserver`].

use std::time::Duration;

use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};

use super::{Registry, names};
use crate::health::entropy::{Assessment, TrackKind};
use crate::health::{BlockVerdict, TESTS, Test};
use crate::source::{ErrorKind, SourceObserver};

/// Metric handles of one source, made once when the pool is built.
pub struct SourceMetrics {
    source: String,
    /// For the estimators' gauges, made when an assessment first names them.
    registry: Registry,
    min_entropy_estimate: Gauge,
    assessment_duration: Histogram,
    bytes_read: Counter,
    read_duration: Histogram,
    up: Gauge,
    available: Gauge,
    passed: Counter,
    failed: Counter,
    test_failures: [Counter; TESTS],
    read_errors: Vec<Counter>,
}

impl SourceMetrics {
    /// Counters start at zero, so that `rate()` and `increase()` see the
    /// first event and no alert needs to handle an absent series.
    pub fn new(registry: &Registry, source: &str, claimed: f64) -> Self {
        registry.make(|| Self::made(registry.clone(), source, claimed))
    }

    fn made(registry: Registry, source: &str, claimed: f64) -> Self {
        let s = || source.to_string();
        let zero = |c: Counter| {
            c.absolute(0);
            c
        };
        // No estimate is NaN, not 0: a comparison with NaN never alerts.
        let min_entropy_estimate = gauge!(names::MIN_ENTROPY_ESTIMATE, "source" => s());
        min_entropy_estimate.set(f64::NAN);
        gauge!(names::MIN_ENTROPY_CLAIMED, "source" => s()).set(claimed);
        Self {
            source: s(),
            registry,
            min_entropy_estimate,
            assessment_duration: histogram!(names::MIN_ENTROPY_ASSESSMENT_DURATION, "source" => s()),
            bytes_read: zero(counter!(names::SOURCE_BYTES_READ, "source" => s())),
            read_duration: histogram!(names::SOURCE_READ_DURATION, "source" => s()),
            up: gauge!(names::SOURCE_UP, "source" => s()),
            available: gauge!(names::SOURCE_AVAILABLE, "source" => s()),
            passed: zero(counter!(names::HEALTH_BLOCKS, "source" => s(), "result" => "pass")),
            failed: zero(counter!(names::HEALTH_BLOCKS, "source" => s(), "result" => "fail")),
            test_failures: std::array::from_fn(|i| {
                let test = Test::ALL[i].name();
                zero(counter!(names::HEALTH_TEST_FAILURES, "source" => s(), "test" => test))
            }),
            read_errors: ErrorKind::ALL
                .iter()
                .map(|k| {
                    zero(counter!(names::SOURCE_READ_ERRORS, "source" => s(), "kind" => k.name()))
                })
                .collect(),
        }
    }

    /// Made for the pool: `SourcePool::open` takes this, bound to a
    /// registry.
    pub fn boxed(registry: &Registry, source: &str, claimed: f64) -> Box<dyn SourceObserver> {
        Box::new(Self::new(registry, source, claimed))
    }
}

impl SourceObserver for SourceMetrics {
    fn standing(&self, up: bool, available: bool) {
        self.up.set(f64::from(u8::from(up)));
        self.available.set(f64::from(u8::from(available)));
    }

    fn read_error(&self, kind: ErrorKind) {
        self.read_errors[kind as usize].increment(1);
    }

    fn read(&self, bytes: u64, took: Duration) {
        self.bytes_read.increment(bytes);
        self.read_duration.record(took.as_secs_f64());
    }

    fn block(&self, verdict: &BlockVerdict) {
        if verdict.passed() {
            self.passed.increment(1);
            return;
        }
        self.failed.increment(1);
        for t in verdict.failed_tests() {
            self.test_failures[t as usize].increment(1);
        }
    }

    /// Shows a finished assessment: the assessed value, and each
    /// estimator's figure on each track (at most twenty series a source).
    fn assessed(&self, a: &Assessment, took: Duration) {
        self.min_entropy_estimate.set(a.assessed);
        self.assessment_duration.record(took.as_secs_f64());
        let tracks = [
            (TrackKind::Literal, Some(&a.literal)),
            (TrackKind::Bitstring, a.bitstring.as_ref()),
        ];
        self.registry.make(|| {
            for (track, estimates) in tracks {
                for (e, v) in estimates.into_iter().flat_map(|x| x.iter()) {
                    gauge!(names::MIN_ENTROPY_ESTIMATOR, "source" => self.source.clone(),
                        "track" => track.name(), "estimator" => e.name())
                    .set(v);
                }
            }
        });
    }
}
