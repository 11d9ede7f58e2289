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
//!
//! `--hold-hwrng-quality` holds whatever device is current at 0 for as long
//! as the daemon runs, passing or not: the kernel credits its hwrng blindly
//! from the moment the driver loads, and this keeps it from crediting
//! untested bytes from the daemon's start on (the daemon credits the tested
//! ones). The kernel still reads and mixes the device's bytes, uncredited,
//! which is harmless. At a clean exit such a hold is given back: it exists
//! for while the daemon credits in the device's place, and once the CRNG is
//! ready (it is, long before an exit) credit changes nothing in the kernel.
//! A crash leaves it in the marker, and the next start or `quarantine
//! --release` gives it back. A device held because it fails stays held.

use std::collections::{BTreeMap, BTreeSet};

use metrics::{Counter, Gauge, counter, gauge};
use tracing::{error, warn};

use crate::kernel::{Hold, Quarantine};
use crate::source::HwrngStanding;
use crate::telemetry::{Registry, names};

/// Passing blocks (after the start-up test, while trusted) that lift a
/// quarantine: 160 KB, about 16 s of a 10 KB/s device. A failure on the way
/// counts under the normal policy (one in 1,250 on good data is forgiven),
/// only a source marked failed starts the count over.
pub const RELEASE_AFTER_BLOCKS: u64 = 64;

/// Which holds the policy makes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rules {
    /// `--quarantine-hwrng`: hold a device while the hwrng source fails.
    pub quarantine: bool,
    /// `--hold-hwrng-quality`: hold every current device while running.
    pub hold_always: bool,
}

/// What the policy knows of the judged device after a cycle.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Facts {
    /// `rng_current` changed since the device was last judged.
    pub switched: bool,
    /// The marker holds the device (for failing or by the option).
    pub held: bool,
    /// It is held only by `--hold-hwrng-quality`.
    pub held_by_option: bool,
    /// How the hwrng source's bytes stand.
    pub standing: HwrngStanding,
}

/// What to do about the judged device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing is written.
    Nothing,
    /// Another device is current: the standing came (at least partly)
    /// from the device before, so nothing is applied, and the hwrng source
    /// is judged again from a start-up test on the new device's bytes.
    Rejudge,
    /// Hold at 0 for failing: a quarantine, which outlives the process. A
    /// quality raised from outside is put back to 0.
    Quarantine,
    /// Hold at 0 by `--hold-hwrng-quality`; given back at a clean exit.
    HoldByOption,
    /// Give the recorded quality back: the device passed again.
    Lift,
}

/// The policy's one rule, pure: every write to `rng_quality` the daemon
/// makes while it runs follows from it.
///
/// - A switch of `rng_current` applies nothing (the standing may be the
///   old device's).
/// - A device failing the tests is quarantined, whatever else holds it.
/// - Under `--hold-hwrng-quality` every device is held; a quarantined one
///   stays a quarantine until it has passed [`RELEASE_AFTER_BLOCKS`].
/// - A quarantined device is lifted once it passed [`RELEASE_AFTER_BLOCKS`]
///   blocks while trusted. Until then, a quality raised from outside while
///   it passes stands: the operator's word wins over a device that is not
///   failing now.
pub fn decide(rules: Rules, facts: Facts) -> Action {
    if facts.switched {
        return Action::Rejudge;
    }
    let failing = rules.quarantine && facts.standing.failing;
    let passed = rules.quarantine && facts.standing.trusted_passes >= RELEASE_AFTER_BLOCKS;
    let quarantined = facts.held && !facts.held_by_option;
    if failing || (rules.hold_always && quarantined && !passed) {
        Action::Quarantine
    } else if rules.hold_always {
        Action::HoldByOption
    } else if facts.held && passed {
        Action::Lift
    } else {
        Action::Nothing
    }
}

pub struct QuarantinePolicy {
    quarantine: Quarantine,
    rules: Rules,
    /// The device whose bytes the hwrng source reads, as last seen.
    judged: Option<String>,
    /// Devices held only by `--hold-hwrng-quality`, not for failing.
    held_by_option: BTreeSet<String>,
    gauges: BTreeMap<String, Gauge>,
    marker_errors: Counter,
    /// For the gauge of a device first seen later.
    registry: Registry,
}

impl QuarantinePolicy {
    pub fn new(quarantine: Quarantine, rules: Rules, registry: &Registry) -> Self {
        for (rng, quality) in quarantine.held() {
            warn!(
                rng,
                rng_quality_recorded = quality,
                "a quarantine left by an earlier run holds; it lifts once the device passes again"
            );
        }
        if let Err(e) = quarantine.marker_usable() {
            error!(error = %e,
                   "the quarantine marker cannot be written: a failing device is still held at rng_quality 0, but only while this process runs; after an exit or a crash nothing records it");
        }
        let marker_errors = registry.make(|| counter!(names::HWRNG_QUARANTINE_MARKER_ERRORS));
        marker_errors.absolute(0);
        // Without the quarantine nothing here judges a device, so what the
        // marker holds can only be an earlier run's hold by the option.
        let held_by_option = match rules.quarantine {
            true => BTreeSet::new(),
            false => quarantine.held().map(|(r, _)| r.to_string()).collect(),
        };
        let mut p = Self {
            judged: quarantine.current(),
            quarantine,
            rules,
            held_by_option,
            gauges: BTreeMap::new(),
            marker_errors,
            registry: registry.clone(),
        };
        p.show();
        p
    }

    /// `random_refresher_hwrng_quarantined{rng}`: 1 for each device held
    /// for failing, 0 for the judged device while it is not.
    fn show(&mut self) {
        let mut rngs: Vec<String> = self.quarantine.held().map(|(r, _)| r.to_string()).collect();
        rngs.extend(self.judged.clone());
        for rng in rngs {
            let held = self.quarantine.is_held(&rng) && !self.held_by_option.contains(&rng);
            let registry = &self.registry;
            self.gauges
                .entry(rng.clone())
                .or_insert_with(|| registry.make(|| gauge!(names::HWRNG_QUARANTINED, "rng" => rng)))
                .set(f64::from(u8::from(held)));
        }
    }

    /// True when `rng_current` names another device than the one judged:
    /// the hwrng source then reads that device, and its standing must start
    /// over (`SourcePool::rejudge_hwrng`). Called before a cycle reads, and
    /// by [`Self::update`] after it.
    pub fn switched(&mut self) -> bool {
        let current = self.quarantine.current();
        if current == self.judged {
            return false;
        }
        warn!(
            from = self.judged.as_deref(),
            to = current.as_deref(),
            "rng_current changed: the hwrng source now reads another device, judged from a start-up test on its own bytes"
        );
        self.judged = current;
        self.show();
        true
    }

    /// Applies the hwrng source's standing after a cycle, as `decide`
    /// says. Returns true when `rng_current` changed, during the cycle (the
    /// standing may then come from the device before, and is not applied)
    /// or because of this update's own write (the kernel picks its best
    /// device again whenever `rng_quality` is written).
    pub fn update(&mut self, standing: HwrngStanding) -> bool {
        if self.switched() {
            return true;
        }
        let Some(rng) = self.judged.clone() else {
            return false;
        };
        let facts = Facts {
            switched: false,
            held: self.quarantine.is_held(&rng),
            held_by_option: self.held_by_option.contains(&rng),
            standing,
        };
        let result = match decide(self.rules, facts) {
            Action::Nothing | Action::Rejudge => Ok(()),
            Action::Quarantine => {
                self.held_by_option.remove(&rng);
                self.hold(&rng)
            }
            Action::HoldByOption => {
                if facts.held && !facts.held_by_option {
                    warn!(
                        rng,
                        "the hardware RNG passes its health tests again; its rng_quality stays 0 (--hold-hwrng-quality)"
                    );
                }
                self.hold_by_option(&rng)
            }
            Action::Lift => self.quarantine.release(&rng).map(|released| {
                if let Some(quality) = released {
                    warn!(
                        rng,
                        rng_quality = quality,
                        blocks = standing.trusted_passes,
                        "quarantine lifted: the hardware RNG passes its health tests again"
                    );
                }
            }),
        };
        if let Err(e) = result {
            error!(error = %e, "cannot change the hardware RNG's quality");
        }
        self.show();
        self.switched()
    }

    /// `--hold-hwrng-quality`: the device is held whatever its standing.
    fn hold_by_option(&mut self, rng: &str) -> Result<(), crate::kernel::QuarantineError> {
        self.held_by_option.insert(rng.to_string());
        match self.quarantine.hold(rng)? {
            Hold::Now { found, marker } => {
                warn!(
                    rng,
                    rng_quality_was = found,
                    "rng_quality held at 0 while the daemon runs (--hold-hwrng-quality): the kernel mixes the device's bytes but credits only what this daemon tested"
                );
                if let Some(e) = marker {
                    self.marker_errors.increment(1);
                    error!(rng, error = %e, "the hold's marker was not written: a crash would leave rng_quality at 0 with no record of the quality to give back");
                }
            }
            Hold::Again { found } => warn!(
                rng,
                rng_quality_found = found,
                "rng_quality was raised from outside; held at 0 again (--hold-hwrng-quality)"
            ),
            Hold::Already => {}
        }
        Ok(())
    }

    fn hold(&mut self, rng: &str) -> Result<(), crate::kernel::QuarantineError> {
        match self.quarantine.hold(rng)? {
            Hold::Now { found, marker } => {
                error!(
                    rng,
                    rng_quality_was = found,
                    "QUARANTINE: the hardware RNG fails its health tests; rng_quality set to 0 so the kernel stops crediting it"
                );
                if let Some(e) = marker {
                    self.marker_errors.increment(1);
                    error!(rng, error = %e,
                           "the quarantine holds, but its marker was not written: it will not outlive this process");
                }
            }
            Hold::Again { found } => {
                error!(
                    rng,
                    rng_quality_found = found,
                    "QUARANTINE: rng_quality of the held hardware RNG was raised from outside while it still fails; set to 0 again"
                );
            }
            Hold::Already => {}
        }
        Ok(())
    }

    /// At exit: a device held by the option gets its quality back; one held
    /// for failing stays held (see the module docs).
    pub fn finish(&mut self) {
        for rng in std::mem::take(&mut self.held_by_option) {
            match self.quarantine.release(&rng) {
                Ok(Some(quality)) => warn!(
                    rng,
                    rng_quality = quality,
                    "rng_quality given back at exit (--hold-hwrng-quality)"
                ),
                Ok(None) => {}
                Err(e) => error!(rng, error = %e,
                    "cannot give rng_quality back at exit; `random-refresher quarantine --release` does it"),
            }
        }
        for (rng, quality) in self.quarantine.held() {
            warn!(
                rng,
                rng_quality_recorded = quality,
                "the quarantine stays after exit until the device passes again; lift it by hand with `random-refresher quarantine --release`"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    //! The policy against a sysfs tree of plain files: the real kernel's
    //! behaviour (a write of 0 makes it pick another device) is imitated
    //! by the test itself, and proven in tests/vm/test_kernel.py.
    use super::*;
    use crate::kernel::KernelPaths;
    use std::path::{Path, PathBuf};

    struct Fake {
        _dir: tempfile::TempDir,
        sys: PathBuf,
        state: PathBuf,
    }

    impl Fake {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let sys = dir.path().join("sys");
            let hw = sys.join("class/misc/hw_random");
            std::fs::create_dir_all(&hw).unwrap();
            std::fs::write(hw.join("rng_current"), "bad_rng.0\n").unwrap();
            std::fs::write(hw.join("rng_available"), "bad_rng.0 good_rng.1\n").unwrap();
            std::fs::write(hw.join("rng_quality"), "1024\n").unwrap();
            let state = dir.path().join("state");
            Self {
                _dir: dir,
                sys,
                state,
            }
        }

        fn write(&self, file: &str, text: &str) {
            let hw = self.sys.join("class/misc/hw_random");
            std::fs::write(hw.join(file), format!("{text}\n")).unwrap();
        }

        fn quality(&self) -> String {
            let hw = self.sys.join("class/misc/hw_random");
            std::fs::read_to_string(hw.join("rng_quality"))
                .unwrap()
                .trim()
                .into()
        }

        fn policy(&self, state: &Path) -> QuarantinePolicy {
            self.policy_with(
                state,
                Rules {
                    quarantine: true,
                    hold_always: false,
                },
            )
        }

        fn policy_with(&self, state: &Path, rules: Rules) -> QuarantinePolicy {
            let paths = KernelPaths::new(Path::new("/proc"), &self.sys);
            let registry = Registry::discarding();
            QuarantinePolicy::new(
                Quarantine::open(&paths, Some(state)).unwrap(),
                rules,
                &registry,
            )
        }
    }

    const FAILING: HwrngStanding = HwrngStanding {
        failing: true,
        trusted_passes: 0,
    };

    #[test]
    fn after_a_switch_the_new_device_is_not_judged_by_the_old_ones_standing() {
        let f = Fake::new();
        let mut p = f.policy(&f.state);
        assert!(!p.update(FAILING), "no switch yet");
        assert_eq!(f.quality(), "0");
        // What the kernel does after that write: the best other device.
        f.write("rng_current", "good_rng.1");
        f.write("rng_quality", "1024");
        // The pool's standing still says failing (it read bad_rng.0): the
        // switch is seen first and the standing not applied.
        assert!(p.update(FAILING), "switch reported");
        assert_eq!(f.quality(), "1024", "good_rng.1 kept its quality");
        assert!(!p.quarantine.is_held("good_rng.1"));
        assert!(p.quarantine.is_held("bad_rng.0"));
        // Seen before a cycle too.
        f.write("rng_current", "bad_rng.0");
        assert!(p.switched());
        assert!(!p.switched(), "reported once");
    }

    #[test]
    fn an_unwritable_marker_still_cuts_the_credit_and_is_counted() {
        let f = Fake::new();
        // A file where the state folder should be: nothing can go in it.
        std::fs::write(&f.state, "occupied").unwrap();
        let mut p = f.policy(&f.state.join("sub"));
        p.update(FAILING);
        assert_eq!(f.quality(), "0", "fails closed");
        assert!(p.quarantine.is_held("bad_rng.0"));
    }

    #[test]
    fn a_quality_raised_from_outside_while_failing_is_put_back_to_zero() {
        let f = Fake::new();
        let mut p = f.policy(&f.state);
        p.update(FAILING);
        assert_eq!(f.quality(), "0");
        f.write("rng_quality", "1024");
        p.update(FAILING);
        assert_eq!(f.quality(), "0");
        // While it passes (before the lift) the operator's word stands.
        f.write("rng_quality", "1024");
        p.update(HwrngStanding {
            failing: false,
            trusted_passes: 3,
        });
        assert_eq!(f.quality(), "1024");
        let marker = std::fs::read_to_string(f.state.join("hwrng-quarantine")).unwrap();
        assert_eq!(
            marker, "bad_rng.0 1024\n",
            "the recorded quality is the original"
        );
    }

    const PASSING: HwrngStanding = HwrngStanding {
        failing: false,
        trusted_passes: RELEASE_AFTER_BLOCKS,
    };

    #[test]
    fn the_decision_for_every_rule_and_standing() {
        let (q, h, both) = (
            Rules {
                quarantine: true,
                hold_always: false,
            },
            Rules {
                quarantine: false,
                hold_always: true,
            },
            Rules {
                quarantine: true,
                hold_always: true,
            },
        );
        let not_yet = HwrngStanding {
            failing: false,
            trusted_passes: RELEASE_AFTER_BLOCKS - 1,
        };
        let facts = |held, held_by_option, standing| Facts {
            switched: false,
            held,
            held_by_option,
            standing,
        };
        use Action::*;
        let table = [
            // (rules, held, by option, standing) → action
            (q, false, false, FAILING, Quarantine),
            (q, true, false, FAILING, Quarantine),
            (q, true, false, not_yet, Nothing),
            (q, true, false, PASSING, Lift),
            (q, false, false, PASSING, Nothing),
            (h, false, false, FAILING, HoldByOption),
            (h, true, true, PASSING, HoldByOption),
            (both, true, true, FAILING, Quarantine),
            (both, true, false, not_yet, Quarantine),
            (both, true, false, PASSING, HoldByOption),
            (Rules::default(), true, false, PASSING, Nothing),
        ];
        for (i, (rules, held, by_option, standing, want)) in table.into_iter().enumerate() {
            assert_eq!(
                decide(rules, facts(held, by_option, standing)),
                want,
                "row {i}"
            );
        }
        let switched = Facts {
            switched: true,
            ..facts(false, false, FAILING)
        };
        assert_eq!(decide(q, switched), Rejudge, "the old device's standing");
    }

    #[test]
    fn the_hold_option_holds_a_passing_device_and_gives_it_back_at_exit() {
        let f = Fake::new();
        let rules = Rules {
            quarantine: false,
            hold_always: true,
        };
        let mut p = f.policy_with(&f.state, rules);
        p.update(PASSING);
        assert_eq!(f.quality(), "0", "held from the start, passing or not");
        assert!(p.held_by_option.contains("bad_rng.0"));
        f.write("rng_quality", "1024");
        p.update(PASSING);
        assert_eq!(f.quality(), "0", "raised from outside: held again");
        p.finish();
        assert_eq!(f.quality(), "1024", "given back at a clean exit");
        assert!(!f.state.join("hwrng-quarantine").exists());
    }

    #[test]
    fn with_both_a_failing_device_is_quarantined_and_after_passing_stays_held_by_the_option() {
        let f = Fake::new();
        let rules = Rules {
            quarantine: true,
            hold_always: true,
        };
        let mut p = f.policy_with(&f.state, rules);
        p.update(FAILING);
        assert!(!p.held_by_option.contains("bad_rng.0"), "held for failing");
        p.update(PASSING);
        assert_eq!(f.quality(), "0", "the option keeps it at 0");
        assert!(p.held_by_option.contains("bad_rng.0"));
        // A failure again makes it a quarantine, which outlives the exit.
        p.update(FAILING);
        p.finish();
        assert_eq!(f.quality(), "0");
        assert!(f.state.join("hwrng-quarantine").exists());
    }
}
