//! Marsaglia's xorshift64 (13, 7, 17): deterministic noise without a crate,
//! for the unit tests, the property tests, the benchmarks and the one
//! timing block the AArch64 build choice is made on. It depends on nothing
//! else in the crate, so `tests/` and `benches/` include this file itself.
//! Never a source of bytes for a sink.

/// The generator's state, which must not be 0.
pub struct XorShift(pub u64);

#[allow(dead_code)] // each crate that includes this file uses a part
impl XorShift {
    pub fn step(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Bits 32 to 39 of the next step.
    pub fn byte(&mut self) -> u8 {
        (self.step() >> 32) as u8
    }

    /// The top byte of the next step.
    pub fn top_byte(&mut self) -> u8 {
        (self.step() >> 56) as u8
    }

    /// Bits 24 to 31 of the next step.
    pub fn mid_byte(&mut self) -> u8 {
        (self.step() >> 24) as u8
    }

    /// A 2500-byte block of [`XorShift::byte`]s.
    pub fn block(&mut self) -> [u8; 2500] {
        std::array::from_fn(|_| self.byte())
    }

    pub fn top_bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.top_byte()).collect()
    }
}
