//! The configured sinks. Each sink is given its own tested batch: the same
//! bytes are never handed to two sinks, so that no entropy is credited twice
//! (say once by the kernel sink now, and again from a seed file at boot).

use metrics::{Counter, counter};
use tracing::{debug, error, info};

use super::{Sink, SinkError, SinkSpec};
use crate::telemetry::{Registry, names};

/// The credit counted for one source, in whole bytes, and the bits short
/// of the next byte.
struct SourceCredit {
    counter: Counter,
    remainder_bits: u64,
}

struct SinkSlot {
    spec: SinkSpec,
    sink: Sink,
    failing: bool,
    bytes: Counter,
    errors: Counter,
}

pub struct SinkSet {
    slots: Vec<SinkSlot>,
    /// Per source, in the pool's order.
    credited: Vec<SourceCredit>,
    reseeds: Counter,
    reseeds_skipped: Counter,
    /// Deliveries that carried credit to the kernel, for the CRNG watch.
    credited_deliveries: u64,
    /// "CRNG not ready" has been logged.
    told_crng_not_ready: bool,
}

impl SinkSet {
    /// Opens every sink; the error names the sink that failed. `sources`
    /// are the pool's source names, in its order: credit is counted per
    /// source. Each sink's series is labelled with the sink as configured
    /// (`file:/var/lib/random-seed`), so that two file sinks are told apart.
    pub fn open(
        specs: &[SinkSpec],
        random_device: &std::path::Path,
        sources: &[String],
        registry: &Registry,
    ) -> Result<Self, (SinkSpec, SinkError)> {
        registry.make(|| Self::open_in(specs, random_device, sources))
    }

    /// [`SinkSet::open`], with the metrics macros bound to its registry.
    fn open_in(
        specs: &[SinkSpec],
        random_device: &std::path::Path,
        sources: &[String],
    ) -> Result<Self, (SinkSpec, SinkError)> {
        let zero = |c: Counter| {
            c.absolute(0);
            c
        };
        let slots = specs
            .iter()
            .map(|spec| {
                let sink = Sink::open(spec, random_device).map_err(|e| (spec.clone(), e))?;
                Ok(SinkSlot {
                    spec: spec.clone(),
                    sink,
                    failing: false,
                    bytes: zero(counter!(names::SINK_BYTES, "sink" => spec.to_string())),
                    errors: zero(counter!(names::SINK_ERRORS, "sink" => spec.to_string())),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            slots,
            credited: sources
                .iter()
                .map(|source| SourceCredit {
                    counter: zero(
                        counter!(names::ENTROPY_CREDITED_BYTES, "source" => source.clone()),
                    ),
                    remainder_bits: 0,
                })
                .collect(),
            reseeds: zero(counter!(names::KERNEL_RESEEDS)),
            reseeds_skipped: zero(counter!(names::KERNEL_RESEEDS_SKIPPED)),
            credited_deliveries: 0,
            told_crng_not_ready: false,
        })
    }

    /// Deliveries so far that carried credit to the kernel.
    pub fn credited_deliveries(&self) -> u64 {
        self.credited_deliveries
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The sinks, for log lines: `kernel, file:/var/lib/random-seed`.
    pub fn names(&self) -> String {
        let names: Vec<String> = self.slots.iter().map(|s| s.spec.to_string()).collect();
        names.join(", ")
    }

    /// Delivers the batch to sink `i` only; true if it took them. `claims`
    /// are the bits each source's part of the batch carries by its claim.
    /// A failure is logged once per change of state.
    pub fn deliver(&mut self, i: usize, batch: &mut super::Batch, claims: &[f64]) -> bool {
        let s = &mut self.slots[i];
        match s.sink.deliver(batch, claims.iter().sum()) {
            Ok(d) => {
                debug!(sink = %s.spec, bytes = d.bytes, credited_bits = d.credited_bits, "delivered");
                s.bytes.increment(d.bytes as u64);
                if d.credited_bits > 0 {
                    self.credited_deliveries += 1;
                    count_credit(&mut self.credited, d.credited_bits, claims);
                }
                if d.reseeded {
                    self.reseeds.increment(1);
                }
                if d.crng_not_ready {
                    self.reseeds_skipped.increment(1);
                    if !self.told_crng_not_ready {
                        info!(sink = %s.spec, credited_bits = d.credited_bits,
                              "the kernel's CRNG is not ready yet: bytes added and credited, the reseed skipped until it is");
                        self.told_crng_not_ready = true;
                    }
                }
                if s.failing {
                    info!(sink = %s.spec, "sink works again");
                    s.failing = false;
                }
                true
            }
            Err(e) => {
                s.errors.increment(1);
                if !s.failing {
                    error!(sink = %s.spec, error = %e, "delivery failed");
                    s.failing = true;
                }
                false
            }
        }
    }
}

/// Counts the bits a sink credited to the sources whose bytes carried them,
/// in each source's whole bytes.
fn count_credit(credited: &mut [SourceCredit], bits: u64, claims: &[f64]) {
    for (c, share) in credited.iter_mut().zip(split_credit(bits, claims)) {
        c.remainder_bits += share;
        c.counter.increment(c.remainder_bits / 8);
        c.remainder_bits %= 8;
    }
}

/// Splits `bits` over the sources by their claims, in whole bits that add
/// up to exactly `bits` (the last claiming source takes what rounding left),
/// so that the per-source counts sum to what the kernel was given. Nothing
/// goes to a source that claimed nothing.
fn split_credit(bits: u64, claims: &[f64]) -> Vec<u64> {
    let mut shares = vec![0; claims.len()];
    let total: f64 = claims.iter().filter(|c| **c > 0.0).sum();
    let Some(last) = claims.iter().rposition(|&c| c > 0.0) else {
        return shares;
    };
    let mut left = bits;
    for (j, &claim) in claims.iter().enumerate().filter(|(_, c)| **c > 0.0) {
        let share = match j == last {
            true => left,
            false => ((bits as f64 * claim / total).floor() as u64).min(left),
        };
        shares[j] = share;
        left -= share;
    }
    shares
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::KernelPaths;
    use crate::sink::Batch;
    use crate::telemetry::exporter::Exporter;

    fn batch(fill: u8) -> Batch {
        let mut b = Batch::new(crate::health::BLOCK_BYTES);
        b.bytes_mut().fill(fill);
        b
    }

    /// Each sink takes only the batch handed to it; one that fails is
    /// counted and logged on its own and the others go on; it is used
    /// again once it works. Its series carry the sink as configured.
    #[test]
    fn each_sink_gets_its_own_batch_and_a_failing_one_fails_alone() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("gone");
        std::fs::create_dir(&gone).unwrap();
        let [a, b, c] = [dir.path().join("a"), dir.path().join("b"), gone.join("c")];
        let specs = [&a, &b, &c].map(|p| SinkSpec::File(p.clone()));
        let kernel = KernelPaths::new("/nonexistent".as_ref(), "/nonexistent".as_ref());
        let exporter = Exporter::new(&[], kernel).unwrap();
        let sources = ["/dev/hwrng".to_string()];
        let mut set = SinkSet::open(
            &specs,
            "/dev/random".as_ref(),
            &sources,
            &exporter.registry(),
        )
        .unwrap();
        assert_eq!(
            set.names(),
            format!(
                "file:{}, file:{}, file:{}",
                a.display(),
                b.display(),
                c.display()
            )
        );
        std::fs::remove_dir(&gone).unwrap();
        let claims = [8.0 * 2500.0];
        assert!(set.deliver(0, &mut batch(1), &claims));
        assert!(set.deliver(1, &mut batch(2), &claims));
        assert!(
            !set.deliver(2, &mut batch(3), &claims),
            "its folder is gone"
        );
        assert!(!set.deliver(2, &mut batch(4), &claims));
        assert_eq!(std::fs::read(&a).unwrap(), vec![1; 2500]);
        assert_eq!(std::fs::read(&b).unwrap(), vec![2; 2500]);
        std::fs::create_dir(&gone).unwrap();
        assert!(set.deliver(2, &mut batch(5), &claims), "works again");
        assert_eq!(std::fs::read(&c).unwrap(), vec![5; 2500]);
        assert_eq!(
            set.credited_deliveries(),
            0,
            "a seed file credits nothing now"
        );
        let text = exporter.render();
        let series =
            |name: &str, p: &std::path::Path| format!("{name}{{sink=\"file:{}\"}}", p.display());
        for (p, bytes, errors) in [(&a, 2500, 0), (&b, 2500, 0), (&c, 2500, 2)] {
            let bytes_line = format!("{} {bytes}\n", series(names::SINK_BYTES, p));
            let errors_line = format!("{} {errors}\n", series(names::SINK_ERRORS, p));
            assert!(text.contains(&bytes_line), "{bytes_line}: {text}");
            assert!(text.contains(&errors_line), "{errors_line}: {text}");
        }
        let credited = format!(
            "{}{{source=\"/dev/hwrng\"}} 0\n",
            names::ENTROPY_CREDITED_BYTES
        );
        assert!(text.contains(&credited), "{text}");
    }

    #[test]
    fn credit_is_split_by_claim_and_adds_up_to_what_was_credited() {
        assert_eq!(split_credit(1000, &[750.0, 250.0]), vec![750, 250]);
        // Rounding: the last claiming source takes the remainder.
        assert_eq!(split_credit(10, &[1.0, 1.0, 1.0]), vec![3, 3, 4]);
        for (bits, claims) in [
            (7, vec![0.3, 0.0, 2.9]),
            (20000, vec![19999.5, 0.5]),
            (1, vec![0.1; 9]),
        ] {
            let shares = split_credit(bits, &claims);
            assert_eq!(shares.iter().sum::<u64>(), bits, "{claims:?}");
            for (s, c) in shares.iter().zip(&claims) {
                assert!(*c > 0.0 || *s == 0, "{claims:?} -> {shares:?}");
            }
        }
    }

    #[test]
    fn a_source_that_claimed_nothing_is_credited_nothing() {
        assert_eq!(split_credit(512, &[0.0, 512.0, 0.0]), vec![0, 512, 0]);
        assert_eq!(split_credit(512, &[0.0, 0.0]), vec![0, 0]);
        assert_eq!(split_credit(0, &[10.0, 0.0]), vec![0, 0]);
    }
}
