//! `FrameCodec`: the tokio-util codec for varint-delimited frames on byte
//! streams (TCP and TLS), around the session core's `FrameDecoder`.

use bytes::{BufMut, Bytes, BytesMut};
use session_core::FrameDecoder;
use session_core::proto::prost;
use tokio_util::codec::{Decoder, Encoder};

use crate::TransportError;

/// Frames on a byte stream: each is a bare protobuf message prefixed by its
/// length as a protobuf varint.
///
/// Decoding checks the declared length against the limit as soon as the
/// prefix shows it, before any of the frame's bytes are reserved (the core's
/// [`FrameDecoder`]); the limit can change at any time
/// ([`set_max_frame_len`](Self::set_max_frame_len)). Encoding writes the
/// prefix, then the frame.
///
/// ```
/// use bytes::{Bytes, BytesMut};
/// use session_transport::FrameCodec;
/// use tokio_util::codec::{Decoder, Encoder};
///
/// let mut codec = FrameCodec::new(16);
/// let mut wire = BytesMut::new();
/// codec.encode(Bytes::from_static(b"hello"), &mut wire)?;
/// assert_eq!(&wire[..], b"\x05hello");
/// assert_eq!(codec.decode(&mut wire)?, Some(Bytes::from_static(b"hello")));
/// # Ok::<(), session_transport::TransportError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameCodec {
    decoder: FrameDecoder,
}

impl FrameCodec {
    /// A codec accepting incoming frames of at most `max_frame_len` bytes.
    pub fn new(max_frame_len: usize) -> Self {
        Self {
            decoder: FrameDecoder::new(max_frame_len),
        }
    }

    /// The limit on incoming frames.
    pub fn max_frame_len(&self) -> usize {
        self.decoder.max_frame_len()
    }

    /// Changes the limit on incoming frames (raised after login).
    pub fn set_max_frame_len(&mut self, max_frame_len: usize) {
        self.decoder.set_max_frame_len(max_frame_len);
    }
}

impl Decoder for FrameCodec {
    type Item = Bytes;
    type Error = TransportError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, TransportError> {
        Ok(self.decoder.decode(src)?)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, TransportError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() => Ok(None),
            // The stream ended inside a frame.
            None => Err(TransportError::PeerClosed),
        }
    }
}

impl Encoder<Bytes> for FrameCodec {
    type Error = TransportError;

    fn encode(&mut self, frame: Bytes, dst: &mut BytesMut) -> Result<(), TransportError> {
        let len = frame.len();
        dst.reserve(prost::length_delimiter_len(len) + len);
        // `BytesMut` grows on demand, so the prefix always fits.
        let _ = prost::encode_length_delimiter(len, dst);
        dst.put(frame);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_length_bomb_fails_on_the_prefix_without_growing_the_buffer() {
        let mut codec = FrameCodec::new(4096);
        // Declares about 34 GB: rejected on the second prefix byte.
        let mut buf = BytesMut::with_capacity(64);
        buf.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x7f]);
        let capacity = buf.capacity();
        let error = codec.decode(&mut buf).unwrap_err();
        assert!(
            matches!(error, TransportError::FrameTooLarge { max: 4096, .. }),
            "{error}"
        );
        assert_eq!(buf.capacity(), capacity);
        assert_eq!(
            error.close_code(),
            Some(session_core::CloseCode::PolicyViolation)
        );
    }

    #[test]
    fn the_limit_can_be_raised_between_frames() {
        let mut codec = FrameCodec::new(4);
        let mut wire = BytesMut::new();
        codec
            .encode(Bytes::from_static(b"12345"), &mut wire)
            .unwrap();
        codec.set_max_frame_len(5);
        assert_eq!(codec.decode(&mut wire).unwrap(), Some("12345".into()));
    }

    #[test]
    fn a_stream_ending_inside_a_frame_is_a_peer_close() {
        let mut codec = FrameCodec::new(64);
        let mut wire = BytesMut::from(&b"\x05hel"[..]);
        assert!(matches!(
            codec.decode_eof(&mut wire),
            Err(TransportError::PeerClosed)
        ));
        assert_eq!(codec.decode_eof(&mut BytesMut::new()).unwrap(), None);
    }

    #[test]
    fn an_overlong_prefix_is_a_protocol_violation() {
        let mut codec = FrameCodec::new(usize::MAX);
        let mut wire = BytesMut::from(&[0x80; 11][..]);
        let error = codec.decode(&mut wire).unwrap_err();
        assert_eq!(
            error.protocol_error(),
            Some(session_core::ProtocolError::BadLengthPrefix)
        );
        assert_eq!(
            error.close_code(),
            Some(session_core::CloseCode::ProtocolError)
        );
    }
}
