//! Repeated blocks: a device that hands out the same buffer again (a stuck
//! DMA ring, a replayed response) passes FIPS 140-2 and SP 800-90B, since
//! every copy looks random on its own. Each source remembers fingerprints of
//! its last blocks, and a block seen among them fails.

use super::Block;

/// How many recent blocks a source remembers (2 KiB of fingerprints).
pub const REMEMBERED: usize = 256;

#[derive(Clone, Debug)]
pub struct RepeatedBlocks {
    recent: Box<[u64; REMEMBERED]>,
    next: usize,
    filled: usize,
}

impl Default for RepeatedBlocks {
    fn default() -> Self {
        Self {
            recent: Box::new([0; REMEMBERED]),
            next: 0,
            filled: 0,
        }
    }
}

impl RepeatedBlocks {
    /// True if `block` equals one of the remembered ones (to 64 bits of
    /// fingerprint: a false alarm is a 2^-56 event per block).
    pub fn seen_before(&mut self, block: &Block) -> bool {
        self.seen_fingerprint(fingerprint(block))
    }

    /// As [`Self::seen_before`], with the block's fingerprint computed
    /// already (on any thread: it depends on the block alone).
    pub fn seen_fingerprint(&mut self, f: u64) -> bool {
        let seen = self.recent[..self.filled].contains(&f);
        self.recent[self.next] = f;
        self.next = (self.next + 1) % REMEMBERED;
        self.filled = (self.filled + 1).min(REMEMBERED);
        seen
    }
}

/// A fast 64-bit hash of the whole block; not cryptographic, it only needs
/// to tell different blocks of random data apart. Eight independent lanes
/// keep the multiplier busy instead of waiting on one chain.
#[inline(always)]
pub fn fingerprint(block: &Block) -> u64 {
    const K: u64 = 0x9E37_79B9_7F4A_7C15;
    let (groups, tail) = block.as_chunks::<64>();
    let mut lanes = [0u64; 8];
    for g in groups {
        let (words, _) = g.as_chunks::<8>();
        for (h, w) in lanes.iter_mut().zip(words) {
            *h = (*h ^ u64::from_le_bytes(*w))
                .wrapping_mul(K)
                .rotate_left(29);
        }
    }
    let mut h = lanes
        .iter()
        .fold(0u64, |acc, l| (acc ^ l).wrapping_mul(K).rotate_left(29));
    for &b in tail {
        h = (h ^ u64::from(b)).wrapping_mul(K);
    }
    h ^ (h >> 32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::BLOCK_BYTES;

    fn block(seed: u8) -> Block {
        std::array::from_fn(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
    }

    #[test]
    fn a_block_seen_recently_fails_and_an_old_one_is_forgotten() {
        let mut r = RepeatedBlocks::default();
        assert!(!r.seen_before(&block(1)));
        assert!(!r.seen_before(&block(2)));
        assert!(r.seen_before(&block(1)));
        let mut r = RepeatedBlocks::default();
        r.seen_before(&[7u8; BLOCK_BYTES]);
        for i in 0..REMEMBERED {
            let mut b = block(3);
            b[..8].copy_from_slice(&(i as u64).to_le_bytes());
            assert!(!r.seen_before(&b));
        }
        assert!(
            !r.seen_before(&[7u8; BLOCK_BYTES]),
            "remembered beyond the window"
        );
    }
}
