//! The receipt types' wire bounds for the one codec,
//! [`hologram_lattice::wire::Wire`].
//!
//! Canonical bytes (what is hashed and signed) are defined by hand elsewhere;
//! the wire format is whatever postcard makes of the serde derives. Every
//! wire type's bound, `MAX_WIRE_LEN`, is computed from its largest valid
//! value; decoding re-checks the bounds serde alone does not enforce (hop
//! count, payload size).

use crate::{
    message::MAX_PAYLOAD_LEN, witness::MAX_HOPS, AuthenticatedMessage, Budget, BudgetLedger,
    Receipt, ReceiptChain, ReceiptError, Signature, Witness,
};
use hologram_lattice::wire::{varint_len, Wire};

/// Largest postcard varint of a `u16`, `u32` and `u64`/`usize`.
const VARINT_U16: usize = 3;
const VARINT_U32: usize = 5;
const VARINT_U64: usize = 10;

const RECEIPT_WIRE: usize = 32 + 32 + VARINT_U32 + VARINT_U16 + 1 + 1;
const SIGNATURE_WIRE: usize = 64;
const ORIGIN_WIRE: usize = 32 + SIGNATURE_WIRE;
const HOP_WIRE: usize = 32 + 32 + SIGNATURE_WIRE;
const WITNESS_WIRE: usize = ORIGIN_WIRE + varint_len(MAX_HOPS) + MAX_HOPS * HOP_WIRE;

/// `Wire` for each type: its name, its bound and, where serde does not
/// enforce them, the method that checks its bounds.
macro_rules! wire {
    ($($ty:ident: $max:expr $(, $check:ident)?;)*) => {$(
        impl Wire for $ty {
            const NAME: &'static str = stringify!($ty);
            const MAX_WIRE_LEN: usize = $max;
            type Error = ReceiptError;
            $(fn check_decoded(&self) -> Result<(), ReceiptError> {
                self.$check()
            })?
        }
    )*};
}

wire! {
    Budget: 1;
    BudgetLedger: 2;
    Receipt: RECEIPT_WIRE;
    Signature: SIGNATURE_WIRE;
    Witness: WITNESS_WIRE, check_bounds;
    AuthenticatedMessage:
        varint_len(MAX_PAYLOAD_LEN) + MAX_PAYLOAD_LEN + RECEIPT_WIRE + WITNESS_WIRE,
        check_bounds;
    ReceiptChain: 32 + VARINT_U64;
}
