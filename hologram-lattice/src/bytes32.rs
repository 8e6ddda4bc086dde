//! The shared shape of every 32-byte identifier ([`Address`](crate::Address),
//! [`R96Digest`](crate::R96Digest), [`NodeId`](crate::NodeId)): lowercase hex for
//! `Display`/`FromStr`/human-readable serde, raw bytes for binary serde.

use crate::LatticeError;

/// Writes `bytes` as lowercase hex.
pub(crate) fn write_hex(f: &mut core::fmt::Formatter<'_>, bytes: &[u8]) -> core::fmt::Result {
    for b in bytes {
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

/// Parses exactly 64 hex digits (either case) into 32 bytes.
pub(crate) fn parse_hex32(s: &str) -> Result<[u8; 32], LatticeError> {
    let got = s.chars().count();
    if got != 64 || s.len() != 64 {
        return Err(LatticeError::HexLength { expected: 64, got });
    }
    let mut out = [0u8; 32];
    for (position, ch) in s.chars().enumerate() {
        let nibble = ch.to_digit(16).ok_or(LatticeError::HexDigit {
            position,
            found: ch,
        })?;
        // `to_digit(16)` is below 16, so the cast is lossless.
        out[position / 2] |= (nibble as u8) << if position % 2 == 0 { 4 } else { 0 };
    }
    Ok(out)
}

/// Implements hex `Display`/`Debug`/`FromStr`, `AsRef<[u8]>`, byte accessors and
/// serde for a `pub struct Name([u8; 32])`.
macro_rules! bytes32_type {
    ($name:ident) => {
        impl $name {
            /// Wraps 32 raw bytes.
            pub const fn from_bytes(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }

            /// The 32 raw bytes.
            pub const fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// The 32 raw bytes, by value.
            pub const fn to_bytes(self) -> [u8; 32] {
                self.0
            }
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                $crate::bytes32::write_hex(f, &self.0)
            }
        }

        impl core::fmt::Debug for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(concat!(stringify!($name), "("))?;
                $crate::bytes32::write_hex(f, &self.0)?;
                f.write_str(")")
            }
        }

        impl core::str::FromStr for $name {
            type Err = $crate::LatticeError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $crate::bytes32::parse_hex32(s).map(Self)
            }
        }

        impl AsRef<[u8]> for $name {
            fn as_ref(&self) -> &[u8] {
                &self.0
            }
        }

        impl From<[u8; 32]> for $name {
            fn from(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                if serializer.is_human_readable() {
                    serializer.collect_str(self)
                } else {
                    self.0.serialize(serializer)
                }
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                if deserializer.is_human_readable() {
                    let s = String::deserialize(deserializer)?;
                    s.parse().map_err(serde::de::Error::custom)
                } else {
                    <[u8; 32]>::deserialize(deserializer).map(Self)
                }
            }
        }
    };
}

pub(crate) use bytes32_type;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_rejects_wrong_length_and_bad_digits() {
        assert_eq!(
            parse_hex32("abc"),
            Err(LatticeError::HexLength {
                expected: 64,
                got: 3
            })
        );
        let mut s = "0".repeat(64);
        s.replace_range(10..11, "g");
        assert_eq!(
            parse_hex32(&s),
            Err(LatticeError::HexDigit {
                position: 10,
                found: 'g'
            })
        );
        // 64 characters but more than 64 bytes: rejected as a length error, never sliced.
        let wide = "é".repeat(64);
        assert!(matches!(
            parse_hex32(&wide),
            Err(LatticeError::HexLength { .. })
        ));
        assert_eq!(parse_hex32(&"Ff".repeat(32)), Ok([0xff; 32]));
    }
}
