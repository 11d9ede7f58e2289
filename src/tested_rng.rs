//! The tested stream as a `rand_core` generator, for Rust programs that
//! want the daemon's guarantee without the daemon.

use rand_core::TryRng;

use crate::health::{BLOCK_BYTES, Block, HealthConfig, Trust};
use crate::source::{ReadLimits, Source, SourceError, SourceSpec};

/// Why a [`TestedRng`] could not give bytes.
#[derive(Debug, thiserror::Error)]
pub enum TestedRngError {
    #[error("{0}")]
    Spec(String),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(
        "{0}: the source failed the health tests too often (rngd's rule: 25 unforgiven failures)"
    )]
    Failed(String),
}

/// Bytes from one source that have passed every health test the daemon
/// runs (FIPS 140-2, SP 800-90B RCT and APT, repeated block), with the same
/// start-up test and the same hold-back: a byte is handed out only once
/// every test window containing it has closed and passed.
///
/// Failed blocks are dropped and reading goes on; once the source collects
/// too many failures (the daemon's failure policy), every call fails. The
/// judgement is the daemon's own ([`crate::health::Trust`]); what the daemon
/// adds, a retry after a backoff and a probe, is left to the caller, who
/// may open the source again.
///
/// ```
/// use rand_core::TryRng;
/// use random_refresher::TestedRng;
///
/// // Any source spec the daemon takes: /dev/hwrng, rdseed, rdrand, a file.
/// let mut rng = TestedRng::open("/dev/urandom")?;
/// let mut key = [0u8; 32];
/// rng.try_fill_bytes(&mut key)?;
/// let nonce = rng.try_next_u64()?;
/// assert!(key != [0; 32] || nonce != 0);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct TestedRng {
    name: String,
    source: Source,
    trust: Trust,
    read: Box<Block>,
    ready: Box<Block>,
    /// Bytes of `ready` already handed out.
    used: usize,
}

impl TestedRng {
    /// Opens `spec` with the daemon's defaults ([`HealthConfig::default`]:
    /// H = 8 bits per byte, alpha = 2^-40, its failure policy) and a 10 s
    /// read timeout.
    pub fn open(spec: &str) -> Result<Self, TestedRngError> {
        let spec: SourceSpec = spec.parse().map_err(TestedRngError::Spec)?;
        let limits = ReadLimits {
            timeout: std::time::Duration::from_secs(10),
            stop: Default::default(),
            progress: None,
        };
        Ok(Self::new(&spec, &limits, &HealthConfig::default())?)
    }

    /// Opens `spec` with the given read limits, judged as `health` says
    /// (the same configuration `run` builds from its options).
    pub fn new(
        spec: &SourceSpec,
        limits: &ReadLimits,
        health: &HealthConfig,
    ) -> Result<Self, SourceError> {
        Ok(Self {
            name: spec.to_string(),
            source: Source::open(spec, limits, None)?,
            trust: Trust::new(health),
            read: Box::new([0; BLOCK_BYTES]),
            ready: Box::new([0; BLOCK_BYTES]),
            used: BLOCK_BYTES,
        })
    }

    /// Reads until the gate releases a block into `ready`.
    fn refill(&mut self) -> Result<(), TestedRngError> {
        loop {
            if self.trust.is_failed() {
                return Err(TestedRngError::Failed(self.name.clone()));
            }
            if let Err(e) = self.source.fill(&mut self.read[..], &mut 0) {
                // The stream broke: the block held back never sees its
                // next window, as in the daemon.
                self.trust.restart();
                return Err(e.into());
            }
            let step = self
                .trust
                .push(&self.read, &mut self.ready, std::time::Instant::now());
            if step.released {
                self.used = 0;
                return Ok(());
            }
        }
    }
}

impl TryRng for TestedRng {
    type Error = TestedRngError;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, mut dst: &mut [u8]) -> Result<(), Self::Error> {
        while !dst.is_empty() {
            if self.used == BLOCK_BYTES {
                self.refill()?;
            }
            let n = dst.len().min(BLOCK_BYTES - self.used);
            dst[..n].copy_from_slice(&self.ready[self.used..self.used + n]);
            self.used += n;
            dst = &mut dst[n..];
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stuck_source_gives_no_byte_and_then_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("zeros");
        std::fs::write(&p, vec![0u8; 30 * BLOCK_BYTES]).unwrap();
        let mut rng = TestedRng::open(p.to_str().unwrap()).unwrap();
        let err = rng.try_next_u32().unwrap_err();
        assert!(matches!(err, TestedRngError::Failed(_)), "{err}");
    }
}
