//! GUIDs (UUIDs) and their GPT on-disk encoding.
//!
//! UEFI 2.10 Appendix A: a GUID's first three fields (`time_low`, `time_mid`,
//! `time_hi_and_version`) are stored little-endian on disk, the last eight
//! bytes as they are written. [`Guid`] keeps the canonical (RFC 9562, textual)
//! byte order; [`Guid::to_gpt_bytes`] produces the mixed-endian form.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// A 128-bit GUID in canonical (big-endian, as printed) byte order.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Guid(pub [u8; 16]);

/// A GUID string that is not of the form `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
#[derive(Debug, thiserror::Error)]
#[error("invalid GUID {input:?}: expected 36 characters like C12A7328-F81F-11D2-BA4B-00A0C93EC93B")]
pub struct GuidParseError {
    /// The rejected input.
    pub input: String,
}

impl Guid {
    /// EFI System Partition.
    pub const ESP: Guid = Guid::from_u128(0xC12A7328_F81F_11D2_BA4B_00A0C93EC93B);
    /// Linux root (x86-64), Discoverable Partitions Specification.
    pub const LINUX_ROOT_X86_64: Guid = Guid::from_u128(0x4F68BCE3_E8CD_4DB1_96E7_FBCAF984B709);
    /// Linux root (64-bit ARM), Discoverable Partitions Specification.
    pub const LINUX_ROOT_ARM64: Guid = Guid::from_u128(0xB921B045_1DF0_41C3_AF44_4C6F280D3FAE);
    /// Linux filesystem data (generic).
    pub const LINUX_FS: Guid = Guid::from_u128(0x0FC63DAF_8483_4772_8E79_3D69D8477DE4);
    /// BIOS boot partition (GRUB core.img on GPT).
    pub const BIOS_BOOT: Guid = Guid::from_u128(0x21686148_6449_6E6F_744E_656564454649);
    /// The all-zero GUID ("unused entry").
    pub const NIL: Guid = Guid([0; 16]);

    /// Builds a GUID from its canonical 128-bit value.
    pub const fn from_u128(v: u128) -> Guid {
        Guid(v.to_be_bytes())
    }

    /// The GPT on-disk (mixed-endian) encoding.
    pub fn to_gpt_bytes(&self) -> [u8; 16] {
        let b = self.0;
        let mut out = b;
        out[0] = b[3];
        out[1] = b[2];
        out[2] = b[1];
        out[3] = b[0];
        out[4] = b[5];
        out[5] = b[4];
        out[6] = b[7];
        out[7] = b[6];
        out
    }

    /// Decodes the GPT on-disk (mixed-endian) encoding.
    pub fn from_gpt_bytes(b: [u8; 16]) -> Guid {
        // The byte swap is an involution.
        Guid(Guid(b).to_gpt_bytes())
    }
}

/// A deterministic GUID derived from `seed`: the first 16 bytes of
/// SHA-256(`seed`) with the version set to 8 ("custom", RFC 9562 §5.8) and
/// the RFC 4122 variant bits `10`.
pub fn guid_from_seed(seed: &[u8]) -> Guid {
    let digest = Sha256::digest(seed);
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0F) | 0x80;
    b[8] = (b[8] & 0x3F) | 0x80;
    Guid(b)
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.0;
        write!(
            f,
            "{:02X}{:02X}{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}-{:02X}{:02X}{:02X}{:02X}{:02X}{:02X}",
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13],
            b[14], b[15]
        )
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({self})")
    }
}

impl FromStr for Guid {
    type Err = GuidParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || GuidParseError {
            input: s.to_string(),
        };
        let bytes = s.as_bytes();
        if bytes.len() != 36 || [8, 13, 18, 23].iter().any(|&i| bytes[i] != b'-') {
            return Err(err());
        }
        let hex: String = s.chars().filter(|&c| c != '-').collect();
        let v = u128::from_str_radix(&hex, 16).map_err(|_| err())?;
        if hex.len() != 32 || hex.starts_with('+') {
            return Err(err());
        }
        Ok(Guid::from_u128(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn esp_mixed_endian() {
        assert_eq!(
            Guid::ESP.to_gpt_bytes(),
            [
                0x28, 0x73, 0x2A, 0xC1, 0x1F, 0xF8, 0xD2, 0x11, 0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E,
                0xC9, 0x3B
            ]
        );
        assert_eq!(Guid::from_gpt_bytes(Guid::ESP.to_gpt_bytes()), Guid::ESP);
    }

    #[test]
    fn parse_and_display_round_trip() {
        let s = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709";
        let g: Guid = s.parse().unwrap();
        assert_eq!(g, Guid::LINUX_ROOT_X86_64);
        assert_eq!(g.to_string(), s);
        assert_eq!(
            "4f68bce3-e8cd-4db1-96e7-fbcaf984b709"
                .parse::<Guid>()
                .unwrap(),
            g
        );
        assert!("4F68BCE3E8CD-4DB1-96E7-FBCAF984B709-"
            .parse::<Guid>()
            .is_err());
        assert!("not a guid".parse::<Guid>().is_err());
    }

    #[test]
    fn seeded_guid_is_deterministic_and_v8() {
        let a = guid_from_seed(b"disk");
        assert_eq!(a, guid_from_seed(b"disk"));
        assert_ne!(a, guid_from_seed(b"disk2"));
        assert_eq!(a.0[6] >> 4, 8);
        assert_eq!(a.0[8] >> 6, 0b10);
    }
}
