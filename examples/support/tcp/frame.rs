//! The frame codec: encoding, and reading frames from a stream with a
//! deadline and buffers that grow only as bytes arrive.

use hologram::lattice::transport::{check_frame, Protocol, TransportError};
use hologram::lattice::PeerId;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The most bytes a frame header takes (its postcard encoding is at most
/// 1 + 10 + 3 + 33 = 47 bytes).
pub const MAX_HEADER: usize = 64;

/// What a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A request; the payload is the handler's input.
    Request = 0,
    /// A successful response; the payload is the handler's output.
    Response = 1,
    /// A failed request; the payload is a postcard [`HandlerError`](hologram::lattice::transport::HandlerError).
    Failed = 2,
    /// The answer was too large to send; the payload is its size, a postcard `u64`.
    TooLarge = 3,
    /// A one-way message.
    Message = 4,
    /// The listener closes the connection; the payload says why (UTF-8).
    Goodbye = 5,
}

impl Kind {
    fn from_u8(byte: u8) -> Option<Kind> {
        [
            Kind::Request,
            Kind::Response,
            Kind::Failed,
            Kind::TooLarge,
            Kind::Message,
            Kind::Goodbye,
        ]
        .into_iter()
        .find(|kind| *kind as u8 == byte)
    }
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// What it is.
    pub kind: Kind,
    /// The request it belongs to.
    pub id: u64,
    /// Its protocol.
    pub protocol: Protocol,
    /// Who sent it (as claimed: nothing checks it).
    pub from: PeerId,
    /// The payload.
    pub payload: Vec<u8>,
}

/// Encodes a frame, length prefix included.
pub fn encode(
    kind: Kind,
    id: u64,
    protocol: Protocol,
    from: PeerId,
    payload: &[u8],
) -> Result<Vec<u8>, TransportError> {
    let header = postcard::to_allocvec(&(kind as u8, id, protocol, from))
        .map_err(|e| TransportError::Io(format!("cannot encode a header: {e}")))?;
    let length = header.len() + payload.len();
    let prefix = u32::try_from(length).map_err(|_| TransportError::TooLarge {
        size: length,
        max: u32::MAX as usize,
    })?;
    let mut frame = Vec::with_capacity(4 + length);
    frame.extend_from_slice(&prefix.to_le_bytes());
    frame.extend_from_slice(&header);
    frame.extend_from_slice(payload);
    Ok(frame)
}

/// The body length a prefix announces, refused if over the limit for
/// payloads of `max_frame` bytes.
pub fn body_length(prefix: [u8; 4], max_frame: usize) -> Result<usize, TransportError> {
    let length = u32::from_le_bytes(prefix) as usize;
    check_frame(length, max_frame.saturating_add(MAX_HEADER))?;
    Ok(length)
}

/// Decodes a body (a frame without its prefix).
pub fn decode(mut body: Vec<u8>, max_frame: usize) -> Result<Frame, TransportError> {
    let ((kind, id, protocol, from), rest) =
        postcard::take_from_bytes::<(u8, u64, Protocol, PeerId)>(&body)
            .map_err(|e| TransportError::Io(format!("malformed frame header: {e}")))?;
    let kind =
        Kind::from_u8(kind).ok_or_else(|| TransportError::Io(format!("unknown kind {kind}")))?;
    check_frame(rest.len(), max_frame)?;
    let header = body.len() - rest.len();
    body.drain(..header);
    Ok(Frame {
        kind,
        id,
        protocol,
        from,
        payload: body,
    })
}

/// Reads one frame; `Ok(None)` at a clean end of the stream. Waits for the
/// frame's first byte as long as it takes (the caller bounds idleness);
/// the rest must follow within `deadline` (see [`read_rest`]).
pub async fn read_frame(
    reader: &mut (impl AsyncRead + Unpin),
    max_frame: usize,
    deadline: Duration,
) -> Result<Option<Frame>, TransportError> {
    let mut first = [0u8; 1];
    if reader.read(&mut first).await.map_err(io_error)? == 0 {
        return Ok(None);
    }
    read_rest(reader, first[0], max_frame, deadline)
        .await
        .map(Some)
}

/// Reads the rest of a frame whose first byte was `first`, all of it
/// within `deadline`. The length is checked before any of the body is
/// read, and the body's buffer grows as its bytes arrive (at most twice
/// what arrived): a peer that announces a large frame and stalls holds
/// little memory, and only until the deadline.
pub async fn read_rest(
    reader: &mut (impl AsyncRead + Unpin),
    first: u8,
    max_frame: usize,
    deadline: Duration,
) -> Result<Frame, TransportError> {
    let whole = async {
        let mut prefix = [first, 0, 0, 0];
        reader
            .read_exact(&mut prefix[1..])
            .await
            .map_err(io_error)?;
        let length = body_length(prefix, max_frame)?;
        let mut body = Vec::new();
        (&mut *reader)
            .take(length as u64)
            .read_to_end(&mut body)
            .await
            .map_err(io_error)?;
        if body.len() < length {
            return Err(TransportError::Io(
                "the connection closed in the middle of a frame".into(),
            ));
        }
        decode(body, max_frame)
    };
    tokio::time::timeout(deadline, whole)
        .await
        .unwrap_or_else(|_| {
            Err(TransportError::Io(format!(
                "a frame did not arrive whole within {deadline:?}"
            )))
        })
}

/// An I/O error as a transport error.
pub fn io_error(e: std::io::Error) -> TransportError {
    TransportError::Io(e.to_string())
}
