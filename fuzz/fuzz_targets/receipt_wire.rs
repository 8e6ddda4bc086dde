//! Every `Wire` type of `hologram-receipt` and the 72-byte canonical receipt.
//! The first byte picks the decoder; the rest is its input.
#![no_main]

use hologram::lattice::wire::Wire;
use hologram::receipt::{
    AuthenticatedMessage, Budget, BudgetLedger, Receipt, ReceiptChain, Signature, Witness,
};
use hologram_fuzz::round_trip;
use libfuzzer_sys::fuzz_target;

fn wire<T: Wire>(data: &[u8]) {
    round_trip(data, T::from_wire, |v: &T| {
        v.to_wire().expect("an accepted value encodes")
    });
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 8 {
        0 => wire::<Receipt>(rest),
        1 => wire::<Budget>(rest),
        2 => wire::<BudgetLedger>(rest),
        3 => wire::<Signature>(rest),
        4 => wire::<Witness>(rest),
        5 => wire::<AuthenticatedMessage>(rest),
        6 => wire::<ReceiptChain>(rest),
        _ => round_trip(rest, Receipt::from_canonical_bytes, |r: &Receipt| {
            r.to_canonical_bytes().to_vec()
        }),
    }
});
