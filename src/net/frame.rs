//! The frames on a QUIC stream, and reading them within limits.
//!
//! A request (on a bidirectional stream) or a message (on a unidirectional
//! one) is one frame, after which the sender finishes the stream:
//!
//! ```text
//! protocol: u16 LE ‖ length: u32 LE ‖ payload (length bytes)
//! ```
//!
//! The answer to a request comes back on the same stream, then the
//! responder finishes it:
//!
//! ```text
//! status: u8 ‖ length: u32 LE ‖ body (length bytes)
//! ```
//!
//! with `status` 0 (`body` is the answer), 1 (the handler refused:
//! `body` is its reason, UTF-8), 2 (the handler failed: its reason) or 3
//! (the answer was over the limit: `body` is its size, u64 LE). Reasons are
//! cut to [`MAX_REASON`] bytes. A reader checks `length` against its limit
//! before it reads the body, grows its buffer as the body arrives, and
//! refuses bytes after the body.

use hologram_lattice::transport::{Protocol, TransportError};
use quinn::RecvStream;
use std::fmt;

/// Bytes of a request or message header.
pub(crate) const REQUEST_HEADER: usize = 6;
/// Bytes of an answer header.
pub(crate) const ANSWER_HEADER: usize = 5;
/// The longest reason a refusal or failure carries.
pub(crate) const MAX_REASON: usize = 1024;
/// The most a read asks the stream for at once.
const CHUNK: usize = 64 * 1024;

/// Why a frame was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// The announced length is over the limit.
    TooLarge { size: usize, max: usize },
    /// An answer's status byte is none of the four.
    BadStatus(u8),
    /// A failure's size field is not 8 bytes, or a reason is not UTF-8.
    BadBody(&'static str),
    /// Bytes followed the frame before the stream ended.
    Trailing,
    /// The stream ended before the frame did.
    Truncated,
    /// The stream broke.
    Stream(String),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLarge { size, max } => {
                write!(f, "frame of {size} bytes exceeds the {max}-byte limit")
            }
            FrameError::BadStatus(s) => write!(f, "unknown answer status {s}"),
            FrameError::BadBody(why) => write!(f, "malformed answer body: {why}"),
            FrameError::Trailing => write!(f, "bytes after the end of the frame"),
            FrameError::Truncated => write!(f, "the stream ended inside a frame"),
            FrameError::Stream(e) => write!(f, "stream error: {e}"),
        }
    }
}

impl From<FrameError> for TransportError {
    fn from(e: FrameError) -> Self {
        match e {
            FrameError::TooLarge { size, max } => TransportError::TooLarge { size, max },
            other => TransportError::Io(other.to_string()),
        }
    }
}

/// The header of a request or message carrying `len` bytes.
pub(crate) fn request_header(protocol: Protocol, len: usize) -> Result<[u8; 6], FrameError> {
    let len32 = u32::try_from(len).map_err(|_| FrameError::TooLarge {
        size: len,
        max: u32::MAX as usize,
    })?;
    let mut h = [0; REQUEST_HEADER];
    h[..2].copy_from_slice(&protocol.0.to_le_bytes());
    h[2..].copy_from_slice(&len32.to_le_bytes());
    Ok(h)
}

/// Reads a request header's protocol and length, refusing one over `max`.
pub(crate) fn parse_request_header(
    h: [u8; REQUEST_HEADER],
    max: usize,
) -> Result<(Protocol, usize), FrameError> {
    let protocol = Protocol(u16::from_le_bytes([h[0], h[1]]));
    let len = u32::from_le_bytes([h[2], h[3], h[4], h[5]]) as usize;
    if len > max {
        return Err(FrameError::TooLarge { size: len, max });
    }
    Ok((protocol, len))
}

/// What an answer frame says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// The handler's answer.
    Ok(Vec<u8>),
    /// The handler refused, and why.
    Refused(String),
    /// The handler failed, and why.
    Failed(String),
    /// The handler's answer, of this many bytes, was over the limit.
    TooLarge(u64),
}

impl Answer {
    /// The answer's header and body.
    pub(crate) fn encode(self) -> ([u8; ANSWER_HEADER], Vec<u8>) {
        let (status, body) = match self {
            Answer::Ok(body) => (0, body),
            Answer::Refused(why) => (1, cut(why)),
            Answer::Failed(why) => (2, cut(why)),
            Answer::TooLarge(size) => (3, size.to_le_bytes().to_vec()),
        };
        let mut h = [0; ANSWER_HEADER];
        h[0] = status;
        // Bodies over u32::MAX are never encoded: answers over the limit
        // (at most u32::MAX) go as `TooLarge`.
        let len = u32::try_from(body.len()).unwrap_or(u32::MAX);
        h[1..].copy_from_slice(&len.to_le_bytes());
        (h, body)
    }
}

/// A reason cut to [`MAX_REASON`] bytes, at a character boundary.
fn cut(mut why: String) -> Vec<u8> {
    if why.len() > MAX_REASON {
        let mut end = MAX_REASON;
        while !why.is_char_boundary(end) {
            end -= 1;
        }
        why.truncate(end);
    }
    why.into_bytes()
}

/// An answer header's status and length, checked against `max` (reasons
/// against [`MAX_REASON`]).
pub(crate) fn parse_answer_header(
    h: [u8; ANSWER_HEADER],
    max: usize,
) -> Result<(u8, usize), FrameError> {
    let status = h[0];
    let len = u32::from_le_bytes([h[1], h[2], h[3], h[4]]) as usize;
    let limit = match status {
        0 => max,
        1 | 2 => MAX_REASON,
        3 => 8,
        other => return Err(FrameError::BadStatus(other)),
    };
    if len > limit {
        return Err(FrameError::TooLarge {
            size: len,
            max: limit,
        });
    }
    Ok((status, len))
}

/// The answer a checked status and its body make.
pub(crate) fn answer_of(status: u8, body: Vec<u8>) -> Result<Answer, FrameError> {
    let reason = |body: Vec<u8>| {
        String::from_utf8(body).map_err(|_| FrameError::BadBody("reason not UTF-8"))
    };
    match status {
        0 => Ok(Answer::Ok(body)),
        1 => Ok(Answer::Refused(reason(body)?)),
        2 => Ok(Answer::Failed(reason(body)?)),
        3 => {
            let size: [u8; 8] = body
                .try_into()
                .map_err(|_| FrameError::BadBody("size not 8 bytes"))?;
            Ok(Answer::TooLarge(u64::from_le_bytes(size)))
        }
        other => Err(FrameError::BadStatus(other)),
    }
}

fn stream_error(e: impl fmt::Display) -> FrameError {
    FrameError::Stream(e.to_string())
}

/// Reads exactly `N` header bytes.
pub(crate) async fn read_header<const N: usize>(
    recv: &mut RecvStream,
) -> Result<[u8; N], FrameError> {
    let mut h = [0; N];
    recv.read_exact(&mut h).await.map_err(|e| match e {
        quinn::ReadExactError::FinishedEarly(_) => FrameError::Truncated,
        quinn::ReadExactError::ReadError(e) => stream_error(e),
    })?;
    Ok(h)
}

/// Reads a body of `len` bytes (already checked against the limit), the
/// buffer growing as bytes arrive, then the end of the stream.
pub(crate) async fn read_body(recv: &mut RecvStream, len: usize) -> Result<Vec<u8>, FrameError> {
    let mut body = Vec::with_capacity(len.min(CHUNK));
    while body.len() < len {
        let want = (len - body.len()).min(CHUNK);
        match recv.read_chunk(want, true).await.map_err(stream_error)? {
            Some(chunk) => body.extend_from_slice(&chunk.bytes),
            None => return Err(FrameError::Truncated),
        }
    }
    match recv.read_chunk(1, true).await.map_err(stream_error)? {
        None => Ok(body),
        Some(_) => Err(FrameError::Trailing),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn request_headers_round_trip(protocol in any::<u16>(), len in 0usize..=u32::MAX as usize, max in any::<u32>()) {
            let h = request_header(Protocol(protocol), len).unwrap();
            match parse_request_header(h, max as usize) {
                Ok((p, l)) => {
                    prop_assert!(len <= max as usize);
                    prop_assert_eq!((p.0, l), (protocol, len));
                }
                Err(e) => {
                    prop_assert!(len > max as usize);
                    prop_assert_eq!(e, FrameError::TooLarge { size: len, max: max as usize });
                }
            }
        }

        /// Any header bytes: a length within the limit, or an error.
        #[test]
        fn any_answer_header_is_bounded(h in any::<[u8; 5]>(), max in 0usize..1 << 24) {
            if let Ok((status, len)) = parse_answer_header(h, max) {
                prop_assert!(status <= 3);
                prop_assert!(len <= max.max(MAX_REASON));
            }
        }

        /// Any status and body: an answer or an error, never a panic; what
        /// encodes decodes to itself.
        #[test]
        fn any_answer_body_decodes_safely(status in any::<u8>(), body in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(answer) = answer_of(status, body) {
                let (h, body) = answer.clone().encode();
                prop_assert_eq!(h[0], status);
                prop_assert_eq!(answer_of(h[0], body), Ok(answer));
            }
        }

        #[test]
        fn reasons_are_cut_at_a_character(why in "\\PC{0,1500}") {
            let (h, body) = Answer::Failed(why.clone()).encode();
            prop_assert!(body.len() <= MAX_REASON);
            prop_assert!(why.as_bytes().starts_with(&body));
            let (status, len) = parse_answer_header(h, 0).unwrap();
            prop_assert_eq!(len, body.len());
            prop_assert!(answer_of(status, body).is_ok());
        }
    }

    #[test]
    fn an_unknown_status_is_refused() {
        assert_eq!(
            parse_answer_header([9, 0, 0, 0, 0], 10),
            Err(FrameError::BadStatus(9))
        );
        assert_eq!(
            answer_of(3, vec![1, 2]),
            Err(FrameError::BadBody("size not 8 bytes"))
        );
    }
}
