//! Whether the kernel's CRNG is ready, watched before and after each
//! cycle's deliveries until it is (it never becomes unready again, so the
//! watch then stops looking).
//!
//! Credit matters only until the CRNG is first ready (`credit_init_bits`
//! returns at once after that), so the moment it becomes ready, and whether
//! one of this daemon's credited deliveries did it, is what a fleet wants to
//! see of a node's boot. The kernel keeps no record of who made it ready;
//! the daemon sees it change between two of its own looks, so "made ready
//! by a delivery" means: not ready before that cycle's credited delivery to
//! the kernel, ready right after it.

use metrics::{Gauge, gauge};
use tracing::{info, warn};

use crate::sink::kernel::{crng_ready, seconds_since_boot};
use crate::telemetry::{Registry, names};

pub struct CrngWatch {
    ready: Option<bool>,
    ready_gauge: Gauge,
    ready_at_gauge: Gauge,
}

impl CrngWatch {
    /// Looks once, and says so if the CRNG is not ready at start.
    pub fn start(registry: &Registry) -> Self {
        let w = registry.make(|| Self {
            ready: crng_ready(),
            ready_gauge: gauge!(names::KERNEL_CRNG_READY),
            ready_at_gauge: gauge!(names::KERNEL_CRNG_READY_BOOT_SECONDS),
        });
        // Ready before the daemon looked: when is not known.
        w.ready_at_gauge.set(f64::NAN);
        w.show();
        if w.ready == Some(false) {
            warn!(
                since_boot_seconds = seconds_since_boot(),
                "the kernel's CRNG is not ready yet: readers of /dev/random and getrandom() block until enough entropy is credited"
            );
        }
        w
    }

    fn show(&self) {
        if let Some(r) = self.ready {
            self.ready_gauge.set(f64::from(u8::from(r)));
        }
    }

    /// Looks again after a cycle. `credited_deliveries` counts this
    /// daemon's deliveries to the kernel sink that carried credit;
    /// `credited_now` says whether this cycle made one.
    pub fn observe(&mut self, credited_deliveries: u64, credited_now: bool) {
        if self.ready == Some(true) {
            return;
        }
        let now = crng_ready();
        if self.ready == Some(false) && now == Some(true) {
            let since_boot = seconds_since_boot();
            if let Some(s) = since_boot {
                self.ready_at_gauge.set(s);
            }
            if credited_now {
                info!(
                    since_boot_seconds = since_boot,
                    delivery = credited_deliveries,
                    "the kernel's CRNG is ready, made ready by this daemon's credited delivery number {credited_deliveries}"
                );
            } else {
                info!(
                    since_boot_seconds = since_boot,
                    "the kernel's CRNG is ready, made ready by another source"
                );
            }
        }
        if now.is_some() {
            self.ready = now;
        }
        self.show();
    }
}
