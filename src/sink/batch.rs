//! The batch buffer, with room in front for the kernel's request header.
//!
//! RNDADDENTROPY takes a `struct rand_pool_info`: two ints, then the bytes.
//! The batch is read into the buffer just after that header, so the kernel
//! sink fills in the two ints and hands the kernel the buffer as it is; a
//! 1 GiB batch costs 1 GiB, not a second copy of it.

/// `entropy_count` and `buf_size`, the two ints of `struct rand_pool_info`.
pub const HEADER: usize = 2 * std::mem::size_of::<libc::c_int>();

#[derive(Debug)]
pub struct Batch {
    buf: Vec<u8>,
}

impl Batch {
    pub fn new(len: usize) -> Self {
        Self {
            buf: vec![0u8; HEADER + len],
        }
    }

    /// The tested bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[HEADER..]
    }

    /// Where the pool reads the next batch into.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.buf[HEADER..]
    }

    pub fn len(&self) -> usize {
        self.buf.len() - HEADER
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The header filled in with `credit_bits` and the length, followed by
    /// the bytes: a complete `struct rand_pool_info`, or `None` when the
    /// batch is too long for the kernel's `int` size.
    pub fn pool_info(&mut self, credit_bits: libc::c_int) -> Option<&[u8]> {
        let size = libc::c_int::try_from(self.len()).ok()?;
        let (count_field, rest) = self.buf.split_at_mut(HEADER / 2);
        count_field.copy_from_slice(&credit_bits.to_ne_bytes());
        rest[..HEADER / 2].copy_from_slice(&size.to_ne_bytes());
        Some(&self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_is_the_header_then_the_same_bytes() {
        let mut b = Batch::new(5);
        b.bytes_mut().copy_from_slice(b"hello");
        let start = b.bytes().as_ptr();
        let info = b.pool_info(33).unwrap().to_vec();
        assert_eq!(&info[..4], &33i32.to_ne_bytes());
        assert_eq!(&info[4..8], &5i32.to_ne_bytes());
        assert_eq!(&info[8..], b"hello");
        assert_eq!(b.bytes(), b"hello");
        assert_eq!(b.bytes().as_ptr(), start, "no copy, no reallocation");
    }
}
