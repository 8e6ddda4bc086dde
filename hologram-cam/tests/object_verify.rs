//! `Object::verify` accepts bytes exactly when they hash to the address.

use hologram_cam::{CamError, Object};
use hologram_lattice::Address;
use proptest::prelude::*;

proptest! {
    #[test]
    fn verify_succeeds_only_for_the_bytes_address(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
        other in proptest::collection::vec(any::<u8>(), 0..2048),
        flip in any::<prop::sample::Index>(),
    ) {
        let address = Address::of(&bytes);
        let object = Object::verify(address, bytes.clone()).unwrap();
        prop_assert_eq!(object.data(), &bytes[..]);
        prop_assert_eq!(object, Object::new(bytes.clone()));

        // Any other bytes are refused, naming both addresses.
        let result = Object::verify(address, other.clone());
        if other == bytes {
            prop_assert!(result.is_ok());
        } else {
            prop_assert_eq!(result, Err(CamError::AddressMismatch {
                expected: address,
                actual: Address::of(&other),
            }));
        }

        // So is the same data with one bit flipped.
        if !bytes.is_empty() {
            let mut tampered = bytes.clone();
            let i = flip.index(tampered.len());
            tampered[i] ^= 1;
            prop_assert!(Object::verify(address, tampered).is_err());
        }
    }

    #[test]
    fn verify_refuses_bytes_under_an_arbitrary_address(
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
        address in any::<[u8; 32]>(),
    ) {
        let address = Address::from_bytes(address);
        prop_assert_eq!(Object::verify(address, bytes.clone()).is_ok(), Address::of(&bytes) == address);
    }
}
