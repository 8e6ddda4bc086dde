//! The codec's properties: round trip, the bound checked unread, trailing
//! and truncated input refused, never a panic.

use super::*;
use proptest::prelude::*;
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum Sample {
    Empty,
    Number(u64),
    Bytes(Vec<u8>),
    Pair(i32, String),
}

fn sample() -> impl Strategy<Value = Sample> {
    prop_oneof![
        Just(Sample::Empty),
        any::<u64>().prop_map(Sample::Number),
        prop::collection::vec(any::<u8>(), 0..200).prop_map(Sample::Bytes),
        (any::<i32>(), ".{0,40}").prop_map(|(n, s)| Sample::Pair(n, s)),
    ]
}

const MAX: usize = 256;

proptest! {
    #[test]
    fn values_round_trip(value in sample()) {
        let bytes = encode("sample", &value).unwrap();
        prop_assert_eq!(decode::<Sample>("sample", &bytes, MAX).unwrap(), value);
    }

    #[test]
    fn over_the_bound_is_refused_before_decoding(value in sample(), cut in 0usize..64) {
        let bytes = encode("sample", &value).unwrap();
        let max = bytes.len().saturating_sub(cut + 1);
        prop_assume!(bytes.len() > max);
        prop_assert_eq!(
            decode::<Sample>("sample", &bytes, max),
            Err(WireError::TooLarge { what: "sample", len: bytes.len(), max })
        );
        // Garbage over the bound is refused the same way: unread.
        let garbage = vec![0xff; max + 1];
        prop_assert_eq!(
            decode::<Sample>("sample", &garbage, max),
            Err(WireError::TooLarge { what: "sample", len: max + 1, max })
        );
    }

    #[test]
    fn any_trailing_byte_is_refused(value in sample(), extra in prop::collection::vec(any::<u8>(), 1..8)) {
        let mut bytes = encode("sample", &value).unwrap();
        bytes.extend_from_slice(&extra);
        prop_assert_eq!(
            decode::<Sample>("sample", &bytes, MAX),
            Err(WireError::Trailing { what: "sample", extra: extra.len() })
        );
    }

    #[test]
    fn truncated_input_is_refused(value in sample(), cut in 1usize..300) {
        let bytes = encode("sample", &value).unwrap();
        let cut = cut.min(bytes.len());
        let short = &bytes[..bytes.len() - cut];
        let refused = matches!(
            decode::<Sample>("sample", short, MAX),
            Err(WireError::Malformed { what: "sample", .. })
        );
        prop_assert!(refused, "{} of {} bytes decoded", short.len(), bytes.len());
    }

    #[test]
    fn garbage_is_an_error_or_a_value_never_a_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        if let Ok(value) = decode::<Sample>("sample", &bytes, MAX) {
            let again = encode("sample", &value).unwrap();
            prop_assert_eq!(decode::<Sample>("sample", &again, MAX).unwrap(), value);
        }
    }
}

#[test]
fn borrowed_fields_are_views_of_the_input() {
    let bytes = encode("bytes", &(1u8, b"abc".as_slice())).unwrap();
    let (n, view): (u8, &[u8]) = decode("bytes", &bytes, 16).unwrap();
    assert_eq!((n, view), (1, b"abc".as_slice()));
    let range = bytes.as_ptr_range();
    assert!(range.contains(&view.as_ptr()));
}

#[test]
fn an_announced_length_is_not_trusted() {
    // A byte string announcing u32::MAX bytes, with three present.
    let mut bytes = vec![0xff, 0xff, 0xff, 0xff, 0x0f];
    bytes.extend_from_slice(b"abc");
    assert!(matches!(
        decode::<Vec<u8>>("bytes", &bytes, 64),
        Err(WireError::Malformed { .. })
    ));
}

#[test]
fn counts_over_the_bound_are_refused() {
    assert_eq!(check_count("ids", 3, 3), Ok(()));
    assert_eq!(
        check_count("ids", 4, 3),
        Err(WireError::TooMany {
            what: "ids",
            count: 4,
            max: 3
        })
    );
}

struct Bounded(Vec<u8>);

impl Serialize for Bounded {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Bounded {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::deserialize(d).map(Bounded)
    }
}

impl Wire for Bounded {
    const NAME: &'static str = "bounded";
    const MAX_WIRE_LEN: usize = 6;
    type Error = WireError;

    fn check_decoded(&self) -> Result<(), WireError> {
        check_count("bounded bytes", self.0.len(), 4)
    }
}

#[test]
fn the_trait_checks_bound_and_value() {
    let ok = Bounded(vec![1, 2, 3, 4]).to_wire().unwrap();
    assert_eq!(Bounded::from_wire(&ok).map(|b| b.0), Ok(vec![1, 2, 3, 4]));
    let five = Bounded(vec![1; 5]).to_wire().unwrap();
    assert!(matches!(
        Bounded::from_wire(&five),
        Err(WireError::TooMany { count: 5, .. })
    ));
    let seven = Bounded(vec![1; 6]).to_wire().unwrap();
    assert!(matches!(
        Bounded::from_wire(&seven),
        Err(WireError::TooLarge { len: 7, .. })
    ));
}

proptest! {
    #[test]
    fn varint_len_is_the_encodings(n in any::<u64>(), bits in 0u32..64) {
        for n in [n, n >> bits] {
            let encoded = encode("n", &n).unwrap();
            prop_assert_eq!(varint_len(n as usize), encoded.len());
        }
    }
}
