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

impl Wire for Budget {
    const NAME: &'static str = "Budget";
    const MAX_WIRE_LEN: usize = 1;
    type Error = ReceiptError;
}

impl Wire for BudgetLedger {
    const NAME: &'static str = "BudgetLedger";
    const MAX_WIRE_LEN: usize = 2;
    type Error = ReceiptError;
}

impl Wire for Receipt {
    const NAME: &'static str = "Receipt";
    const MAX_WIRE_LEN: usize = RECEIPT_WIRE;
    type Error = ReceiptError;
}

impl Wire for Signature {
    const NAME: &'static str = "Signature";
    const MAX_WIRE_LEN: usize = SIGNATURE_WIRE;
    type Error = ReceiptError;
}

impl Wire for Witness {
    const NAME: &'static str = "Witness";
    const MAX_WIRE_LEN: usize = WITNESS_WIRE;
    type Error = ReceiptError;

    fn check_decoded(&self) -> Result<(), ReceiptError> {
        self.check_bounds()
    }
}

impl Wire for AuthenticatedMessage {
    const NAME: &'static str = "AuthenticatedMessage";
    const MAX_WIRE_LEN: usize =
        varint_len(MAX_PAYLOAD_LEN) + MAX_PAYLOAD_LEN + RECEIPT_WIRE + WITNESS_WIRE;
    type Error = ReceiptError;

    fn check_decoded(&self) -> Result<(), ReceiptError> {
        self.check_bounds()
    }
}

impl Wire for ReceiptChain {
    const NAME: &'static str = "ReceiptChain";
    const MAX_WIRE_LEN: usize = 32 + VARINT_U64;
    type Error = ReceiptError;
}
