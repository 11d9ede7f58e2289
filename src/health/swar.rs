//! Byte tests on a 64-bit word at a time ("SIMD within a register").

/// High bit of each byte of `x` that is zero, exactly: no false positives,
/// unlike the shorter `(x - 0x01..) & !x` test, so counts can be taken.
#[inline(always)]
pub fn zero_byte_mask(x: u64) -> u64 {
    const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    !(((x & LOW7) + LOW7) | x | LOW7)
}

/// How many bytes of `bytes` equal `value`: byte-wide counts over runs of
/// 255 bytes (they cannot overflow), a loop the compiler turns into vector
/// compares and subtracts at whatever width the CPU has.
#[inline(always)]
pub fn count_equal(bytes: &[u8], value: u8) -> u32 {
    bytes
        .chunks(255)
        .map(|run| {
            let mut n = 0u8;
            for &b in run {
                n += u8::from(b == value);
            }
            u32::from(n)
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_bytes_are_found_exactly() {
        assert_eq!(zero_byte_mask(0), 0x8080_8080_8080_8080);
        assert_eq!(zero_byte_mask(u64::MAX), 0);
        // 0x0100 has a zero low byte next to a one: the short test misfires here.
        assert_eq!(
            zero_byte_mask(0x0000_0000_0000_0100u64 | 0xFFFF_FFFF_FFFF_0000).count_ones(),
            1
        );
        for v in 0..=255u8 {
            let x = u64::from_le_bytes([v, 1, 0x80, v, 0, 0xFF, v ^ 1, 7]);
            let want = [v, 1, 0x80, v, 0, 0xFF, v ^ 1, 7]
                .iter()
                .filter(|&&b| b == 0)
                .count() as u32;
            assert_eq!(zero_byte_mask(x).count_ones(), want);
        }
    }

    #[test]
    fn count_equal_counts_every_position() {
        let bytes: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 13) as u8).collect();
        for v in 0..14 {
            assert_eq!(
                count_equal(&bytes, v),
                bytes.iter().filter(|&&b| b == v).count() as u32
            );
        }
    }
}
