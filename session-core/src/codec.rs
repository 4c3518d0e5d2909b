//! Frame codec for byte streams: varint length-delimited frames, with the
//! length checked against a limit before anything is allocated.

use bytes::{Buf, Bytes, BytesMut};
use session_proto::prost::Message;

use crate::error::ProtocolError;

/// The default largest frame before login: an unauthenticated peer must not
/// make the server reserve more (mosquitto's CVE-2023-0809).
pub const DEFAULT_PRE_LOGIN_MAX_FRAME_LEN: usize = 4 * 1024;
/// The default largest frame after login.
pub const DEFAULT_MAX_FRAME_LEN: usize = 1024 * 1024;

/// How frames are laid out on the transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Framing {
    /// Each frame is prefixed by its length as a protobuf varint (TCP, TLS).
    Delimited,
    /// The transport keeps message boundaries (WebSocket binary messages).
    Bare,
}

/// Appends `message` to `buf` in the given framing.
pub fn encode_frame<M: Message>(message: &M, framing: Framing, buf: &mut BytesMut) {
    let len = message.encoded_len();
    match framing {
        Framing::Delimited => {
            buf.reserve(len + session_proto::prost::length_delimiter_len(len));
            // BytesMut grows on demand, so encoding cannot run out of room.
            let _ = message.encode_length_delimited(buf);
        }
        Framing::Bare => {
            buf.reserve(len);
            let _ = message.encode(buf);
        }
    }
}

/// Incremental decoder of varint-delimited frames.
///
/// Feed it whatever the socket gave (partial frames, many frames at once) in
/// a `BytesMut`; each call to [`FrameDecoder::decode`] takes at most one frame
/// off the front. A declared length above the limit is an error as soon as
/// the prefix shows it, before the frame's bytes are reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameDecoder {
    max_frame_len: usize,
}

/// A length prefix never needs more bytes than a `u64` varint.
const MAX_VARINT_LEN: usize = 10;

impl FrameDecoder {
    /// A decoder accepting frames of at most `max_frame_len` bytes.
    pub fn new(max_frame_len: usize) -> Self {
        Self { max_frame_len }
    }

    /// The current limit.
    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    /// Changes the limit (raised after login, from the session's
    /// `max_frame_len()`).
    pub fn set_max_frame_len(&mut self, max_frame_len: usize) {
        self.max_frame_len = max_frame_len;
    }

    /// Takes one frame off the front of `buf`: `Ok(None)` when more bytes are
    /// needed (having reserved at most the rest of one frame within the limit).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, ProtocolError> {
        let mut len: u64 = 0;
        let mut prefix = 0;
        loop {
            let Some(&byte) = buf.get(prefix) else {
                return Ok(None);
            };
            if prefix == MAX_VARINT_LEN - 1 && byte > 1 {
                return Err(ProtocolError::BadLengthPrefix);
            }
            len |= u64::from(byte & 0x7f) << (7 * prefix);
            prefix += 1;
            if len > self.max_frame_len as u64 {
                // The prefix only grows from here: reject before reading on.
                return Err(ProtocolError::FrameTooLarge {
                    len,
                    max: self.max_frame_len,
                });
            }
            if byte & 0x80 == 0 {
                break;
            }
            if prefix == MAX_VARINT_LEN {
                return Err(ProtocolError::BadLengthPrefix);
            }
        }
        // Within the limit, so this fits in usize.
        let len = len as usize;
        let needed = prefix + len;
        if buf.len() < needed {
            buf.reserve(needed - buf.len());
            return Ok(None);
        }
        buf.advance(prefix);
        Ok(Some(buf.split_to(len).freeze()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use session_proto::v1::{ClientFrame, Heartbeat, client_frame::Kind};

    fn heartbeat(ack: u64) -> ClientFrame {
        ClientFrame {
            kind: Some(Kind::Heartbeat(Heartbeat {
                ack_event_seq: ack,
                ack_request_id: 0,
            })),
        }
    }

    #[test]
    fn decodes_many_frames_from_one_buffer_and_waits_for_partial_ones() {
        let mut wire = BytesMut::new();
        for ack in [1, 300, 70_000] {
            encode_frame(&heartbeat(ack), Framing::Delimited, &mut wire);
        }
        let all = wire.freeze();
        // Feed one byte at a time: every frame comes out once, in order.
        let mut decoder = FrameDecoder::new(64);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for byte in all.iter() {
            buf.extend_from_slice(&[*byte]);
            while let Some(frame) = decoder.decode(&mut buf).unwrap() {
                got.push(ClientFrame::decode(frame).unwrap());
            }
        }
        assert_eq!(got, vec![heartbeat(1), heartbeat(300), heartbeat(70_000)]);
        assert!(buf.is_empty());
    }

    #[test]
    fn rejects_a_declared_length_over_the_limit_before_reserving() {
        let mut decoder = FrameDecoder::new(4096);
        // 0xff 0xff 0xff 0x7f declares ~268 MB; the first two bytes already exceed 4096.
        let mut buf = BytesMut::from(&[0xff, 0xff][..]);
        let capacity = buf.capacity();
        assert_eq!(
            decoder.decode(&mut buf),
            Err(ProtocolError::FrameTooLarge {
                len: 16383,
                max: 4096
            })
        );
        assert_eq!(buf.capacity(), capacity, "nothing was reserved");
    }

    #[test]
    fn reserves_no_more_than_the_rest_of_one_frame() {
        let mut decoder = FrameDecoder::new(4096);
        let mut buf = BytesMut::from(&[0x80, 0x20][..]); // declares 4096 bytes
        assert_eq!(decoder.decode(&mut buf), Ok(None));
        assert!(buf.capacity() >= 4098 && buf.capacity() < 2 * 4098);
    }

    #[test]
    fn rejects_an_overlong_varint() {
        let mut decoder = FrameDecoder::new(usize::MAX);
        let mut buf = BytesMut::from(&[0x80; 11][..]);
        assert_eq!(
            decoder.decode(&mut buf),
            Err(ProtocolError::BadLengthPrefix)
        );
    }

    #[test]
    fn a_zero_length_frame_is_an_empty_frame() {
        let mut decoder = FrameDecoder::new(16);
        let mut buf = BytesMut::from(&[0x00, 0x00][..]);
        assert_eq!(decoder.decode(&mut buf), Ok(Some(Bytes::new())));
        assert_eq!(decoder.decode(&mut buf), Ok(Some(Bytes::new())));
        assert_eq!(decoder.decode(&mut buf), Ok(None));
    }
}
