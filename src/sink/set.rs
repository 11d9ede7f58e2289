//! The configured sinks. Each sink is given its own tested batch: the same
//! bytes are never handed to two sinks, so that no entropy is credited twice
//! (say once by the kernel sink now, and again from a seed file at boot).

use metrics::{Counter, counter};
use tracing::{debug, error, info};

use super::{Sink, SinkError, SinkSpec};
use crate::telemetry::names;

struct SinkSlot {
    spec: SinkSpec,
    sink: Sink,
    failing: bool,
    bytes: Counter,
    errors: Counter,
}

pub struct SinkSet {
    slots: Vec<SinkSlot>,
    credited: Counter,
    reseeds: Counter,
    reseeds_skipped: Counter,
    /// Credited bits not yet counted in whole bytes.
    credited_bits_remainder: u64,
    /// Deliveries that carried credit to the kernel, for the CRNG watch.
    credited_deliveries: u64,
    /// "CRNG not ready" has been logged.
    told_crng_not_ready: bool,
}

impl SinkSet {
    /// Opens every sink; the error names the sink that failed.
    pub fn open(
        specs: &[SinkSpec],
        random_device: &std::path::Path,
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
                    bytes: zero(counter!(names::SINK_BYTES, "sink" => spec.label())),
                    errors: zero(counter!(names::SINK_ERRORS, "sink" => spec.label())),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            slots,
            credited: zero(counter!(names::ENTROPY_CREDITED_BYTES)),
            reseeds: zero(counter!(names::KERNEL_RESEEDS)),
            reseeds_skipped: zero(counter!(names::KERNEL_RESEEDS_SKIPPED)),
            credited_bits_remainder: 0,
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

    /// Delivers `bytes` to sink `i` only; true if it took them. A failure is
    /// logged once per change of state.
    pub fn deliver(&mut self, i: usize, batch: &mut super::Batch, credit_bits: f64) -> bool {
        let s = &mut self.slots[i];
        match s.sink.deliver(batch, credit_bits) {
            Ok(d) => {
                debug!(sink = %s.spec, bytes = d.bytes, credited_bits = d.credited_bits, "delivered");
                s.bytes.increment(d.bytes as u64);
                if d.credited_bits > 0 {
                    self.credited_deliveries += 1;
                    self.credited_bits_remainder += d.credited_bits;
                    self.credited.increment(self.credited_bits_remainder / 8);
                    self.credited_bits_remainder %= 8;
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
