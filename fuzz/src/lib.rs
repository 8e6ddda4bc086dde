//! What every fuzz target checks of a decoder: it never panics on any input,
//! and whatever it accepts re-encodes to bytes that decode to the same value.

/// Decodes `bytes`; if that succeeds, checks that the value's encoding is
/// stable under a second decode and encode. Panics (a fuzzer finding) when the
/// round trip changes the value's bytes or a valid encoding fails to decode.
pub fn round_trip<T, E: std::fmt::Debug>(
    bytes: &[u8],
    decode: impl Fn(&[u8]) -> Result<T, E>,
    encode: impl Fn(&T) -> Vec<u8>,
) {
    let Ok(value) = decode(bytes) else { return };
    let encoded = encode(&value);
    let again = match decode(&encoded) {
        Ok(again) => again,
        Err(e) => panic!("an accepted value's own encoding was refused: {e:?}"),
    };
    assert_eq!(encode(&again), encoded, "the round trip changed the value");
}
