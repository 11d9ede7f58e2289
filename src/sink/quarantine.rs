//! When to hold the kernel's credit for its hwrng at 0, and when to lift it:
//! held while the hwrng source is failed by the health tests, lifted once it
//! delivers a whole tested batch again.

use metrics::{Gauge, gauge};
use tracing::{error, info, warn};

use crate::kernel::Quarantine;
use crate::source::HwrngStanding;
use crate::telemetry::names;

pub struct QuarantinePolicy {
    quarantine: Quarantine,
    gauge: Gauge,
}

impl QuarantinePolicy {
    pub fn new(quarantine: Quarantine) -> Self {
        let gauge = gauge!(names::HWRNG_QUARANTINED, "rng" => quarantine.rng().to_string());
        if quarantine.is_held() {
            warn!(
                rng = quarantine.rng(),
                "a quarantine left by an earlier run holds; it lifts once the device passes again"
            );
        }
        let p = Self { quarantine, gauge };
        p.show();
        p
    }

    fn show(&self) {
        self.gauge
            .set(f64::from(u8::from(self.quarantine.is_held())));
    }

    pub fn is_held(&self) -> bool {
        self.quarantine.is_held()
    }

    /// Applies one cycle's verdict on the hwrng.
    pub fn update(&mut self, standing: HwrngStanding) {
        let q = &mut self.quarantine;
        let result = if standing.failing {
            q.hold().map(|held| {
                if let Some(found) = held {
                    error!(rng = q.rng(), rng_quality_was = found,
                           "QUARANTINE: the hardware RNG fails its health tests; rng_quality set to 0 so the kernel stops crediting it");
                }
            })
        } else if standing.passing {
            q.release().map(|released| {
                if let Some(quality) = released {
                    warn!(
                        rng = q.rng(),
                        rng_quality = quality,
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
    }

    /// Restores what the daemon changed in the kernel; called before exiting.
    pub fn finish(&mut self) {
        let q = &mut self.quarantine;
        match q.release() {
            Ok(Some(quality)) => info!(
                rng = q.rng(),
                rng_quality = quality,
                "quarantine lifted at exit"
            ),
            Ok(None) => {}
            Err(e) => error!(error = %e, "cannot restore the hardware RNG's quality at exit"),
        }
        self.show();
    }
}
