//! When to hold the kernel's credit for its hwrng at 0, and when to lift it.
//!
//! The device judged is the one `rng_current` names: its bytes are what the
//! hwrng source reads. It is held at 0 while the hwrng source is failed by
//! the health tests, and given back the quality recorded for it once the
//! source has passed its start-up test and [`RELEASE_AFTER_BLOCKS`] blocks
//! while trusted. Nothing is lifted at exit: a device that is still held
//! when the daemon stops (too many failed cycles, SIGTERM, `once`) stays
//! held, with its record in the marker, until a later run sees it pass or an
//! operator runs `random-refresher quarantine --release`.

use std::collections::BTreeMap;

use metrics::{Gauge, gauge};
use tracing::{error, warn};

use crate::kernel::Quarantine;
use crate::source::HwrngStanding;
use crate::telemetry::names;

/// Passing blocks (after the start-up test, while trusted) that lift a
/// quarantine: 160 KB, about 16 s of a 10 KB/s device. A failure on the way
/// counts under the normal policy (one in 1,250 on good data is forgiven),
/// only a source marked failed starts the count over.
pub const RELEASE_AFTER_BLOCKS: u64 = 64;

pub struct QuarantinePolicy {
    quarantine: Quarantine,
    /// The device whose bytes the hwrng source reads, as last seen.
    judged: Option<String>,
    gauges: BTreeMap<String, Gauge>,
}

impl QuarantinePolicy {
    pub fn new(quarantine: Quarantine) -> Self {
        for (rng, quality) in quarantine.held() {
            warn!(
                rng,
                rng_quality_recorded = quality,
                "a quarantine left by an earlier run holds; it lifts once the device passes again"
            );
        }
        let mut p = Self {
            judged: quarantine.current(),
            quarantine,
            gauges: BTreeMap::new(),
        };
        p.show();
        p
    }

    /// `random_refresher_hwrng_quarantined{rng}`: 1 for each held device,
    /// 0 for the judged device while it is not held.
    fn show(&mut self) {
        let mut rngs: Vec<String> = self.quarantine.held().map(|(r, _)| r.to_string()).collect();
        rngs.extend(self.judged.clone());
        for rng in rngs {
            let held = self.quarantine.is_held(&rng);
            self.gauges
                .entry(rng.clone())
                .or_insert_with(|| gauge!(names::HWRNG_QUARANTINED, "rng" => rng))
                .set(f64::from(u8::from(held)));
        }
    }

    /// Applies the hwrng source's standing after a cycle. Returns true when
    /// `rng_current` changed: the hwrng source then reads another device,
    /// and its tests must start over.
    pub fn update(&mut self, standing: HwrngStanding) -> bool {
        let current = self.quarantine.current();
        if current != self.judged {
            warn!(
                from = self.judged.as_deref(),
                to = current.as_deref(),
                "rng_current changed: the hwrng source now reads another device and is tested from a start-up test on"
            );
            self.judged = current;
            self.show();
            return true;
        }
        let Some(rng) = self.judged.clone() else {
            return false;
        };
        let q = &mut self.quarantine;
        let result = if standing.failing {
            q.hold(&rng).map(|held| {
                if let Some(found) = held {
                    error!(rng, rng_quality_was = found,
                           "QUARANTINE: the hardware RNG fails its health tests; rng_quality set to 0 so the kernel stops crediting it");
                }
            })
        } else if q.is_held(&rng) && standing.trusted_passes >= RELEASE_AFTER_BLOCKS {
            q.release(&rng).map(|released| {
                if let Some(quality) = released {
                    warn!(
                        rng,
                        rng_quality = quality,
                        blocks = standing.trusted_passes,
                        "quarantine lifted: the hardware RNG passes its health tests again"
                    );
                }
            })
        } else {
            Ok(())
        };
        if let Err(e) = result {
            error!(error = %e, "cannot change the hardware RNG's quality");
        }
        self.show();
        false
    }

    /// At exit: a held device stays held (see the module docs).
    pub fn finish(&mut self) {
        for (rng, quality) in self.quarantine.held() {
            warn!(
                rng,
                rng_quality_recorded = quality,
                "the quarantine stays after exit until the device passes again; lift it by hand with `random-refresher quarantine --release`"
            );
        }
    }
}
