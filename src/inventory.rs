//! `sources`: what entropy this host offers, and why a source is not usable.

use std::io::Write;
use std::path::Path;

use crate::kernel::KernelPaths;
use crate::source::CpuInstruction;

pub fn print(kernel: &KernelPaths, hwrng: &Path, mut out: impl Write) -> std::io::Result<()> {
    let r = kernel.read();
    let status = match std::fs::File::open(hwrng) {
        Ok(_) => "usable".to_string(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            "not usable: no such device (no hardware RNG driver loaded, or in a container not passed in with --device /dev/hwrng)".into()
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            "not usable: permission denied (readable by root only)".into()
        }
        Err(e) => format!("not usable: {e}"),
    };
    writeln!(out, "{}: {status}", hwrng.display())?;
    writeln!(
        out,
        "  rng_current: {}",
        r.rng_current.as_deref().unwrap_or("none")
    )?;
    writeln!(
        out,
        "  rng_available: {}",
        if r.rng_available.is_empty() {
            "none".into()
        } else {
            r.rng_available.join(" ")
        }
    )?;
    match r.rng_quality {
        Some(q) => writeln!(
            out,
            "  rng_quality: {q} (the kernel credits {q}/1024 bits per bit it reads itself)"
        )?,
        None => writeln!(
            out,
            "  rng_quality: unknown (no {})",
            kernel.rng_quality_path().display()
        )?,
    }
    for i in CpuInstruction::ALL {
        if i.supported() {
            writeln!(out, "{}: usable", i.name())?;
        } else {
            writeln!(out, "{}: not usable: {}", i.name(), i.unsupported_reason())?;
        }
    }
    writeln!(
        out,
        "kernel pool: entropy_avail {} bits, poolsize {} bits",
        r.entropy_avail_bits
            .map_or("unknown".into(), |v| v.to_string()),
        r.poolsize_bits.map_or("unknown".into(), |v| v.to_string())
    )?;
    writeln!(
        out,
        "sink kernel: {}",
        if crate::sink::has_sys_admin() {
            "usable (CAP_SYS_ADMIN held)"
        } else {
            "not usable: needs CAP_SYS_ADMIN (use --sink mix)"
        }
    )?;
    writeln!(out, "sinks mix, file:PATH, stdout: need no capability")?;
    let quality = kernel.rng_quality_path();
    let writable = std::fs::OpenOptions::new()
        .write(true)
        .open(&quality)
        .is_ok();
    writeln!(
        out,
        "--quarantine-hwrng: {} (needs write access to {}: root and a writable /sys)",
        if writable { "usable" } else { "not usable" },
        quality.display()
    )?;
    writeln!(
        out,
        "--user: keeps only CAP_SYS_ADMIN for the kernel sink, and CAP_DAC_READ_SEARCH to reopen root-only sources"
    )
}
