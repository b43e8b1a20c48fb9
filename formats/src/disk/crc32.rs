//! CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), as used by the GPT
//! header and partition entry array checksums (UEFI 2.10 §5.3.2), and CRC-32C
//! (Castagnoli, reflected polynomial 0x82F63B78), as used by VHDX.

const fn make_table(poly: u32) -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { poly ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

static TABLE: [u32; 256] = make_table(0xEDB8_8320);
static TABLE_C: [u32; 256] = make_table(0x82F6_3B78);

fn checksum(table: &[u32; 256], data: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in data {
        c = table[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
    }
    c ^ 0xFFFF_FFFF
}

/// CRC-32 of `data`.
pub(crate) fn crc32(data: &[u8]) -> u32 {
    checksum(&TABLE, data)
}

/// CRC-32C of `data`.
pub(crate) fn crc32c(data: &[u8]) -> u32 {
    checksum(&TABLE_C, data)
}

#[cfg(test)]
mod tests {
    #[test]
    fn check_value() {
        assert_eq!(super::crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(super::crc32(b""), 0);
        assert_eq!(super::crc32c(b"123456789"), 0xE306_9283);
    }
}
