//! Key files: an Ed25519 secret seed (a node's or a client's) as 64 hex
//! digits and a newline.
//!
//! The id (the public key) is what the other nodes name a node by in their
//! peers lists, and what a client is known by: the QUIC transport proves it
//! in every handshake. A key file is created readable by its owner only (on
//! Unix) and is never overwritten.

use super::error::{io, NodeError};
use hologram_receipt::KeyPair;
use std::path::Path;

/// The largest key file read (a seed, a newline and some whitespace).
const MAX_KEY_FILE: u64 = 256;

/// Makes a new key pair from the operating system's randomness and writes
/// its seed to `path`, which must not exist.
pub fn generate_key_file(path: &Path) -> Result<KeyPair, NodeError> {
    let keys = random_keys().map_err(|reason| NodeError::KeyFile {
        path: path.to_path_buf(),
        reason,
    })?;
    write_key_file(path, &keys)?;
    Ok(keys)
}

/// A key pair from the operating system's randomness.
pub(crate) fn random_keys() -> Result<KeyPair, String> {
    use ring::rand::SecureRandom;
    let mut seed = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut seed)
        .map_err(|_| "cannot draw a secret seed from the operating system".to_string())?;
    Ok(KeyPair::from_seed(seed))
}

/// Writes `keys`' seed to `path`, which must not exist.
pub fn write_key_file(path: &Path, keys: &KeyPair) -> Result<(), NodeError> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| NodeError::KeyFile {
        path: path.to_path_buf(),
        reason: format!("cannot create it (an existing key is never overwritten): {e}"),
    })?;
    let text = format!("{}\n", hex(&keys.to_seed()));
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io(format!("writing the key file {}", path.display())))
}

/// Reads the key pair whose seed `path` holds.
pub fn read_key_file(path: &Path) -> Result<KeyPair, NodeError> {
    let bad = |reason: String| NodeError::KeyFile {
        path: path.to_path_buf(),
        reason,
    };
    let size = std::fs::metadata(path)
        .map_err(|e| bad(format!("cannot read it: {e}")))?
        .len();
    if size > MAX_KEY_FILE {
        return Err(bad(format!(
            "{size} bytes, a key file holds 64 hex digits (at most {MAX_KEY_FILE} bytes)"
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
    let seed = parse_hex32(text.trim()).map_err(bad)?;
    Ok(KeyPair::from_seed(seed))
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses exactly 64 hex digits.
pub(crate) fn parse_hex32(text: &str) -> Result<[u8; 32], String> {
    if text.len() != 64 {
        return Err(format!("{} characters, expected 64 hex digits", text.len()));
    }
    let digit = |c: u8| {
        char::from(c)
            .to_digit(16)
            .ok_or_else(|| format!("{:?} is not a hex digit", char::from(c)))
    };
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        if let [high, low] = *pair {
            // Two digits below 16 make a value below 256.
            *byte = (digit(high)? * 16 + digit(low)?) as u8;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn key_files_round_trip_and_are_never_overwritten() {
        let dir = std::env::temp_dir().join(format!("hologram-node-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("node.key");
        let _ = std::fs::remove_file(&path);
        let keys = generate_key_file(&path).unwrap();
        assert_eq!(read_key_file(&path).unwrap().node_id(), keys.node_id());
        assert!(generate_key_file(&path).is_err());
        std::fs::write(&path, "not a key").unwrap();
        assert!(matches!(
            read_key_file(&path),
            Err(NodeError::KeyFile { .. })
        ));
        std::fs::write(&path, vec![b'a'; 4096]).unwrap();
        assert!(read_key_file(&path).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    proptest! {
        #[test]
        fn key_and_peer_text_never_panics(text in "\\PC{0,80}") {
            let _ = parse_hex32(&text);
            let _ = super::super::peers::parse_peer(&text);
        }

        #[test]
        fn hex_round_trips(bytes in any::<[u8; 32]>()) {
            prop_assert_eq!(parse_hex32(&hex(&bytes)).unwrap(), bytes);
        }
    }
}
