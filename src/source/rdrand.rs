//! RDSEED and RDRAND (x86-64).
//!
//! RDSEED returns conditioned output of the CPU's entropy source and may run
//! dry under load, so it is retried with a pause. RDRAND returns the output of
//! a DRBG reseeded from that source: plenty of it, but a DRBG's output, which
//! is why its default entropy credit is low (see docs/sinks.md, "Entropy credit").

use std::arch::x86_64::{_rdrand64_step, _rdseed64_step};

use super::CpuInstruction;

/// Fills every word; false if one could not be had within the retries.
/// The caller checked that the CPU has the instruction.
pub(super) fn fill(instruction: CpuInstruction, words: &mut [[u8; 8]]) -> bool {
    match instruction {
        // SAFETY: `CpuSource::new` checked that the CPU has the instruction.
        CpuInstruction::RdRand => unsafe { fill_rdrand(words) },
        // SAFETY: as above.
        CpuInstruction::RdSeed => unsafe { fill_rdseed(words) },
        CpuInstruction::Rndr | CpuInstruction::Rndrrs => false,
    }
}

#[target_feature(enable = "rdrand")]
fn fill_rdrand(words: &mut [[u8; 8]]) -> bool {
    let retries = CpuInstruction::RdRand.retries();
    for w in words {
        let mut v = 0u64;
        // Safe to call here: this function is compiled for RDRAND, and its
        // callers checked that the CPU has it.
        let mut ok = _rdrand64_step(&mut v) == 1;
        let mut tries = 1;
        while !ok && tries < retries {
            ok = _rdrand64_step(&mut v) == 1;
            tries += 1;
        }
        if !ok {
            return false;
        }
        *w = v.to_le_bytes();
    }
    true
}

#[target_feature(enable = "rdseed")]
fn fill_rdseed(words: &mut [[u8; 8]]) -> bool {
    let retries = CpuInstruction::RdSeed.retries();
    for w in words {
        let mut v = 0u64;
        let mut tries = 0;
        while _rdseed64_step(&mut v) != 1 {
            tries += 1;
            if tries >= retries {
                return false;
            }
            std::hint::spin_loop();
        }
        *w = v.to_le_bytes();
    }
    true
}
