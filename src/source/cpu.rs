//! RDSEED and RDRAND.
//!
//! RDSEED returns conditioned output of the CPU's entropy source and may run
//! dry under load, so it is retried with a pause. RDRAND returns the output of
//! a DRBG reseeded from that source: plenty of it, but a DRBG's output, which
//! is why its default entropy credit is low (see the README).

use std::arch::x86_64::{_rdrand64_step, _rdseed64_step};

use super::SourceError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuInstruction {
    RdRand,
    RdSeed,
}

impl CpuInstruction {
    pub fn name(self) -> &'static str {
        match self {
            Self::RdRand => "rdrand",
            Self::RdSeed => "rdseed",
        }
    }

    pub fn supported(self) -> bool {
        match self {
            Self::RdRand => std::arch::is_x86_feature_detected!("rdrand"),
            Self::RdSeed => std::arch::is_x86_feature_detected!("rdseed"),
        }
    }

    /// Attempts per word before giving up: Intel's guidance is 10 for RDRAND;
    /// RDSEED underflows routinely when several cores ask at once.
    fn retries(self) -> u32 {
        match self {
            Self::RdRand => 10,
            Self::RdSeed => 1000,
        }
    }
}

#[derive(Debug)]
pub struct CpuSource {
    instruction: CpuInstruction,
}

impl CpuSource {
    pub fn new(instruction: CpuInstruction) -> Result<Self, SourceError> {
        if !instruction.supported() {
            return Err(SourceError::Unsupported(instruction.name()));
        }
        Ok(Self { instruction })
    }

    pub fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), SourceError> {
        let (words, tail) = dst.as_chunks_mut::<8>();
        match self.instruction {
            // SAFETY: `new` checked that the CPU has the instruction.
            CpuInstruction::RdRand => unsafe { fill_rdrand(words) },
            // SAFETY: as above.
            CpuInstruction::RdSeed => unsafe { fill_rdseed(words) },
        }
        .then_some(())
        .ok_or(SourceError::CpuExhausted(self.instruction.name()))?;
        if !tail.is_empty() {
            let mut last = [[0u8; 8]];
            // SAFETY: as above.
            let ok = unsafe {
                match self.instruction {
                    CpuInstruction::RdRand => fill_rdrand(&mut last),
                    CpuInstruction::RdSeed => fill_rdseed(&mut last),
                }
            };
            if !ok {
                return Err(SourceError::CpuExhausted(self.instruction.name()));
            }
            tail.copy_from_slice(&last[0][..tail.len()]);
        }
        Ok(())
    }
}

/// Fills every word; false if one could not be had within the retries.
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
