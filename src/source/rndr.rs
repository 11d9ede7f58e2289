//! RNDRRS and RNDR (AArch64, FEAT_RNG from Armv8.5-A).
//!
//! Both read a DRBG: RNDRRS reseeds it from the true random source before
//! the read (the analogue of RDSEED), RNDR reseeds at an implementation-
//! defined rate (the analogue of RDRAND, with no architectural bound on the
//! rate, hence no default credit; see docs/sinks.md). A read that has no
//! entropy to give returns 0 and sets the Z flag; it is retried a bounded
//! number of times, then reported as a source fault.

use super::CpuInstruction;

/// `HWCAP2_RNG` in the auxiliary vector: the kernel says the CPU (and the
/// hypervisor) let user space execute RNDR and RNDRRS.
const HWCAP2_RNG: libc::c_ulong = 1 << 16;

pub(super) fn supported() -> bool {
    // SAFETY: getauxval only reads the process's auxiliary vector.
    let hwcap2 = unsafe { libc::getauxval(libc::AT_HWCAP2) };
    hwcap2 & HWCAP2_RNG != 0
}

/// Fills every word; false if one could not be had within the retries.
pub(super) fn fill(instruction: CpuInstruction, words: &mut [[u8; 8]]) -> bool {
    let retries = instruction.retries();
    let read = match instruction {
        CpuInstruction::Rndr => rndr,
        CpuInstruction::Rndrrs => rndrrs,
        CpuInstruction::RdSeed | CpuInstruction::RdRand => return false,
    };
    for w in words {
        let mut tries = 0;
        let value = loop {
            if let Some(v) = read() {
                break v;
            }
            tries += 1;
            if tries >= retries {
                return false;
            }
            std::hint::spin_loop();
        };
        *w = value.to_le_bytes();
    }
    true
}

/// A function that reads one random number system register: the value,
/// or None when the read failed (Z set). The register is named in the asm
/// string itself, so each one needs its own function.
macro_rules! random_register {
    ($(#[$doc:meta])* $name:ident, $register:literal) => {
        $(#[$doc])*
        fn $name() -> Option<u64> {
            let (value, ok): (u64, u64);
            // SAFETY: only called after `supported()` saw HWCAP2_RNG, so the
            // register exists and EL0 may read it; the asm touches no memory.
            unsafe {
                std::arch::asm!(
                    concat!("mrs {v}, ", $register),
                    "cset {ok}, ne",
                    v = out(reg) value,
                    ok = out(reg) ok,
                    options(nomem, nostack),
                );
            }
            (ok != 0).then_some(value)
        }
    };
}

random_register!(
    /// One RNDR read.
    rndr,
    "s3_3_c2_c4_0"
);
random_register!(
    /// One RNDRRS read.
    rndrrs,
    "s3_3_c2_c4_1"
);
