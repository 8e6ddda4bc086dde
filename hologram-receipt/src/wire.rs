//! Wire formats: serde + postcard, with a size bound checked before decoding.
//!
//! Canonical bytes (what is hashed and signed) are defined by hand elsewhere;
//! the wire format is whatever postcard makes of the serde derives. Every
//! wire type has a bound on its encoding, [`Wire::MAX_WIRE_LEN`], computed
//! from its largest valid value; [`Wire::from_wire`] rejects longer input
//! before reading a byte of it, rejects trailing bytes, and re-checks the
//! bounds that serde alone does not enforce (hop count, payload size).

use crate::{
    message::MAX_PAYLOAD_LEN, witness::MAX_HOPS, AuthenticatedMessage, Budget, BudgetLedger,
    Receipt, ReceiptChain, ReceiptError, Signature, Witness,
};
use serde::{de::DeserializeOwned, Serialize};

/// Largest postcard varint of a `u16`, `u32` and `u64`/`usize`.
const VARINT_U16: usize = 3;
const VARINT_U32: usize = 5;
const VARINT_U64: usize = 10;
/// Bytes of a postcard varint holding `n`.
const fn varint_len(n: usize) -> usize {
    let mut len = 1;
    let mut rest = n >> 7;
    while rest > 0 {
        len += 1;
        rest >>= 7;
    }
    len
}

const RECEIPT_WIRE: usize = 32 + 32 + VARINT_U32 + VARINT_U16 + 1 + 1;
const SIGNATURE_WIRE: usize = 64;
const ORIGIN_WIRE: usize = 32 + SIGNATURE_WIRE;
const HOP_WIRE: usize = 32 + 32 + SIGNATURE_WIRE;
const WITNESS_WIRE: usize = ORIGIN_WIRE + varint_len(MAX_HOPS) + MAX_HOPS * HOP_WIRE;

/// A type with a bounded postcard wire encoding.
pub trait Wire: Serialize + DeserializeOwned {
    /// The type's name in errors.
    const NAME: &'static str;
    /// The longest valid encoding; longer input is rejected unread.
    const MAX_WIRE_LEN: usize;

    /// Bounds a decoded value must meet beyond what serde checks.
    fn check_decoded(&self) -> Result<(), ReceiptError> {
        Ok(())
    }

    /// The postcard encoding.
    fn to_wire(&self) -> Result<Vec<u8>, ReceiptError> {
        postcard::to_allocvec(self).map_err(|source| ReceiptError::WireEncode {
            what: Self::NAME,
            source,
        })
    }

    /// Decodes exactly `bytes`: [`ReceiptError::WireTooLarge`] above
    /// [`Wire::MAX_WIRE_LEN`] (checked first), [`ReceiptError::WireDecode`]
    /// for malformed input, [`ReceiptError::WireTrailing`] for bytes left
    /// over, and the type's own errors for values out of bounds.
    fn from_wire(bytes: &[u8]) -> Result<Self, ReceiptError> {
        if bytes.len() > Self::MAX_WIRE_LEN {
            return Err(ReceiptError::WireTooLarge {
                what: Self::NAME,
                len: bytes.len(),
                max: Self::MAX_WIRE_LEN,
            });
        }
        let (value, rest) = postcard::take_from_bytes::<Self>(bytes).map_err(|source| {
            ReceiptError::WireDecode {
                what: Self::NAME,
                source,
            }
        })?;
        if !rest.is_empty() {
            return Err(ReceiptError::WireTrailing {
                what: Self::NAME,
                extra: rest.len(),
            });
        }
        value.check_decoded()?;
        Ok(value)
    }
}

impl Wire for Budget {
    const NAME: &'static str = "Budget";
    const MAX_WIRE_LEN: usize = 1;
}

impl Wire for BudgetLedger {
    const NAME: &'static str = "BudgetLedger";
    const MAX_WIRE_LEN: usize = 2;
}

impl Wire for Receipt {
    const NAME: &'static str = "Receipt";
    const MAX_WIRE_LEN: usize = RECEIPT_WIRE;
}

impl Wire for Signature {
    const NAME: &'static str = "Signature";
    const MAX_WIRE_LEN: usize = SIGNATURE_WIRE;
}

impl Wire for Witness {
    const NAME: &'static str = "Witness";
    const MAX_WIRE_LEN: usize = WITNESS_WIRE;

    fn check_decoded(&self) -> Result<(), ReceiptError> {
        self.check_bounds()
    }
}

impl Wire for AuthenticatedMessage {
    const NAME: &'static str = "AuthenticatedMessage";
    const MAX_WIRE_LEN: usize =
        varint_len(MAX_PAYLOAD_LEN) + MAX_PAYLOAD_LEN + RECEIPT_WIRE + WITNESS_WIRE;

    fn check_decoded(&self) -> Result<(), ReceiptError> {
        self.check_bounds()
    }
}

impl Wire for ReceiptChain {
    const NAME: &'static str = "ReceiptChain";
    const MAX_WIRE_LEN: usize = 32 + VARINT_U64;
}
