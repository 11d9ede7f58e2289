//! Random number instructions of the CPU: RDSEED and RDRAND on x86-64,
//! RNDRRS and RNDR on AArch64 (FEAT_RNG). Every name parses on every
//! machine, so a configuration can be shared by a mixed fleet; a source the
//! CPU lacks fails to open with the list of what this machine offers.

use super::SourceError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuInstruction {
    /// x86-64: conditioned output of the CPU's entropy source.
    RdSeed,
    /// x86-64: a DRBG's output, reseeded from that source.
    RdRand,
    /// AArch64: a DRBG's output, reseeded before every read.
    Rndrrs,
    /// AArch64: a DRBG's output, reseeded at an implementation-defined rate.
    Rndr,
}

impl CpuInstruction {
    /// Every instruction, best first (the order `sources` lists them in).
    pub const ALL: [Self; 4] = [Self::RdSeed, Self::RdRand, Self::Rndrrs, Self::Rndr];

    pub fn name(self) -> &'static str {
        match self {
            Self::RdSeed => "rdseed",
            Self::RdRand => "rdrand",
            Self::Rndrrs => "rndrrs",
            Self::Rndr => "rndr",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|i| i.name() == name)
    }

    /// The architecture that has the instruction, for messages.
    pub fn architecture(self) -> &'static str {
        match self {
            Self::RdSeed | Self::RdRand => "x86-64",
            Self::Rndrrs | Self::Rndr => "AArch64 with FEAT_RNG",
        }
    }

    pub fn supported(self) -> bool {
        match self {
            #[cfg(target_arch = "x86_64")]
            Self::RdSeed => std::arch::is_x86_feature_detected!("rdseed"),
            #[cfg(target_arch = "x86_64")]
            Self::RdRand => std::arch::is_x86_feature_detected!("rdrand"),
            #[cfg(target_arch = "aarch64")]
            Self::Rndrrs | Self::Rndr => super::rndr::supported(),
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// Why this machine cannot use the instruction, naming what it can.
    pub fn unsupported_reason(self) -> String {
        let offered: Vec<&str> = Self::ALL
            .into_iter()
            .filter(|i| i.supported())
            .map(|i| i.name())
            .collect();
        let offered = if offered.is_empty() {
            "a device or file path only".to_string()
        } else {
            format!("a device or file path, {}", offered.join(", "))
        };
        let why = if self.native() {
            "this CPU does not have the instruction"
        } else {
            "the instruction is not on this architecture"
        };
        format!(
            "{why} (it is {}); this machine offers {offered}",
            self.architecture()
        )
    }

    /// Whether the instruction belongs to the architecture this was built for.
    fn native(self) -> bool {
        match self {
            Self::RdSeed | Self::RdRand => cfg!(target_arch = "x86_64"),
            Self::Rndrrs | Self::Rndr => cfg!(target_arch = "aarch64"),
        }
    }

    /// Attempts per word before giving up: Intel's guidance is 10 for
    /// RDRAND, and RNDR is specified alike; the seed instructions run dry
    /// routinely when several cores ask at once, so they wait longer.
    #[cfg_attr(
        not(any(target_arch = "x86_64", target_arch = "aarch64")),
        allow(dead_code)
    )]
    pub(super) fn retries(self) -> u32 {
        match self {
            Self::RdRand | Self::Rndr => 10,
            Self::RdSeed | Self::Rndrrs => 1000,
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
            return Err(SourceError::Unsupported {
                name: instruction.name(),
                reason: instruction.unsupported_reason(),
            });
        }
        Ok(Self { instruction })
    }

    pub fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), SourceError> {
        let exhausted = || SourceError::CpuExhausted(self.instruction.name());
        let (words, tail) = dst.as_chunks_mut::<8>();
        if !self.fill_words(words) {
            return Err(exhausted());
        }
        if !tail.is_empty() {
            let mut last = [[0u8; 8]];
            if !self.fill_words(&mut last) {
                return Err(exhausted());
            }
            tail.copy_from_slice(&last[0][..tail.len()]);
        }
        Ok(())
    }

    /// Fills every word; false if one could not be had within the retries.
    #[cfg_attr(
        not(any(target_arch = "x86_64", target_arch = "aarch64")),
        allow(unused_variables)
    )]
    fn fill_words(&self, words: &mut [[u8; 8]]) -> bool {
        match self.instruction {
            #[cfg(target_arch = "x86_64")]
            i @ (CpuInstruction::RdSeed | CpuInstruction::RdRand) => super::rdrand::fill(i, words),
            #[cfg(target_arch = "aarch64")]
            i @ (CpuInstruction::Rndrrs | CpuInstruction::Rndr) => super::rndr::fill(i, words),
            // `new` let no other instruction through.
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }
}
