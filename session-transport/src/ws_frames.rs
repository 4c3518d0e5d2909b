//! Server-side WebSocket framing without I/O, for drivers that read and
//! write the socket themselves once the upgrade is done (a server's
//! reactor, after [`Transport::into_ws_tcp`](crate::Transport::into_ws_tcp)).
//!
//! It accepts what RFC 6455 lets a client send: masked frames, binary
//! messages (fragmented or not), and pings, pongs and closes between
//! fragments. Anything else fails with the same [`ProtocolError`] the
//! tungstenite-based transport reports for it: a text message, a message
//! over the limit (checked on each header, before its payload is waited
//! for or reserved), and every other violation (an unmasked frame,
//! reserved bits or opcodes, a control frame that is long or fragmented, a
//! continuation out of place, a 64-bit length with its top bit set, a close
//! frame whose payload RFC 6455 forbids: one byte, a code that is not sent
//! on the wire, or a reason that is not UTF-8).

use bytes::{Buf, Bytes, BytesMut};
use session_core::ProtocolError;

use crate::error::{MALFORMED_WEBSOCKET, TEXT_MESSAGE};

/// One thing a client sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsIncoming {
    /// A whole binary message (reassembled if fragmented).
    Message(Bytes),
    /// A ping, to be answered with [`encode_pong`] and this payload.
    Ping(Bytes),
    /// A pong (nothing to do).
    Pong,
    /// A close frame with a payload RFC 6455 allows (none, or a code that
    /// may be sent and a reason in UTF-8): answer with [`encode_close`] and
    /// stop reading.
    Close,
}

/// Takes one frame off the front of `buf`. `partial` holds the fragments
/// of a message in progress between calls (`None` between messages);
/// `max_message_len` bounds a whole message. `Ok(None)` means more bytes
/// are needed: at most the rest of the current frame has been reserved.
pub fn decode_client_frame(
    buf: &mut BytesMut,
    partial: &mut Option<BytesMut>,
    max_message_len: usize,
) -> Result<Option<WsIncoming>, ProtocolError> {
    loop {
        match decode_one(buf, partial, max_message_len)? {
            Step::NeedMore => return Ok(None),
            Step::Fragment => {}
            Step::Incoming(incoming) => return Ok(Some(incoming)),
        }
    }
}

/// What one frame came to.
enum Step {
    NeedMore,
    /// A fragment, kept in `partial`.
    Fragment,
    Incoming(WsIncoming),
}

fn decode_one(
    buf: &mut BytesMut,
    partial: &mut Option<BytesMut>,
    max_message_len: usize,
) -> Result<Step, ProtocolError> {
    if buf.len() < 2 {
        return Ok(Step::NeedMore);
    }
    let (first, second) = (buf[0], buf[1]);
    let fin = first & 0x80 != 0;
    let opcode = first & 0x0f;
    if first & 0x70 != 0 || second & 0x80 == 0 {
        // Reserved bits (no extension is negotiated), or an unmasked frame.
        return Err(MALFORMED_WEBSOCKET);
    }
    let (extended, len) = match second & 0x7f {
        126 => {
            let Some(bytes) = buf.get(2..4) else {
                return Ok(Step::NeedMore);
            };
            (2, u64::from(u16::from_be_bytes([bytes[0], bytes[1]])))
        }
        127 => {
            let Some(bytes) = buf.get(2..10) else {
                return Ok(Step::NeedMore);
            };
            let mut array = [0; 8];
            array.copy_from_slice(bytes);
            let len = u64::from_be_bytes(array);
            if len >> 63 != 0 {
                return Err(MALFORMED_WEBSOCKET);
            }
            (8, len)
        }
        short => (0, u64::from(short)),
    };
    match opcode {
        // Control frames: short and never fragmented.
        8..=10 if !fin || len > 125 => return Err(MALFORMED_WEBSOCKET),
        8..=10 => {}
        1 => return Err(TEXT_MESSAGE),
        2 if partial.is_some() => return Err(MALFORMED_WEBSOCKET),
        0 if partial.is_none() => return Err(MALFORMED_WEBSOCKET),
        0 | 2 => {
            let so_far = partial.as_ref().map_or(0, |message| message.len() as u64);
            let total = so_far.saturating_add(len);
            if total > max_message_len as u64 {
                return Err(ProtocolError::FrameTooLarge {
                    len: total,
                    max: max_message_len,
                });
            }
        }
        _ => return Err(MALFORMED_WEBSOCKET),
    }
    let header = 2 + extended + 4;
    // Within the limit (or at most 125), so this fits in usize.
    let needed = header + len as usize;
    if buf.len() < needed {
        buf.reserve(needed - buf.len());
        return Ok(Step::NeedMore);
    }
    let mask = [
        buf[header - 4],
        buf[header - 3],
        buf[header - 2],
        buf[header - 1],
    ];
    let mut payload = buf.split_to(needed);
    payload.advance(header);
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= mask[i & 3];
    }
    Ok(Step::Incoming(match opcode {
        8 if !is_valid_close_payload(&payload) => return Err(MALFORMED_WEBSOCKET),
        8 => WsIncoming::Close,
        9 => WsIncoming::Ping(payload.freeze()),
        10 => WsIncoming::Pong,
        _ => match (partial.take(), fin) {
            (None, true) => WsIncoming::Message(payload.freeze()),
            (None, false) => {
                *partial = Some(payload);
                return Ok(Step::Fragment);
            }
            (Some(mut message), fin) => {
                message.extend_from_slice(&payload);
                if !fin {
                    *partial = Some(message);
                    return Ok(Step::Fragment);
                }
                WsIncoming::Message(message.freeze())
            }
        },
    }))
}

/// Whether a close frame's (unmasked) payload is one RFC 6455 allows
/// (section 5.5.1): empty, or a status code followed by a reason in UTF-8,
/// where the code is one that may be sent (section 7.4): 1000–1003,
/// 1007–1013 or 3000–4999, the codes tungstenite's `CloseCode::is_allowed`
/// accepts. Anything else (one byte, 1005, 1006, 1015, a code reserved or
/// out of range, a reason that is not UTF-8) fails the connection as a
/// malformed WebSocket frame, here and, through `WsGuard`, before
/// tungstenite sees the frame.
pub(crate) fn is_valid_close_payload(payload: &[u8]) -> bool {
    match payload {
        [] => true,
        [_] => false,
        [high, low, reason @ ..] => {
            let code = u16::from_be_bytes([*high, *low]);
            matches!(code, 1000..=1003 | 1007..=1013 | 3000..=4999)
                && std::str::from_utf8(reason).is_ok()
        }
    }
}

fn header(opcode: u8, len: usize, out: &mut BytesMut) {
    out.reserve(10 + len);
    out.extend_from_slice(&[0x80 | opcode]);
    match len {
        0..=125 => out.extend_from_slice(&[len as u8]),
        126..=0xffff => {
            out.extend_from_slice(&[126]);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.extend_from_slice(&[127]);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
}

/// Appends `payload` as one unmasked binary message (a server's frame).
pub fn encode_binary(payload: &[u8], out: &mut BytesMut) {
    header(0x2, payload.len(), out);
    out.extend_from_slice(payload);
}

/// Appends the answer to a ping.
pub fn encode_pong(payload: &[u8], out: &mut BytesMut) {
    header(0xa, payload.len(), out);
    out.extend_from_slice(payload);
}

/// Appends a close frame with status 1000 (normal closure).
pub fn encode_close(out: &mut BytesMut) {
    header(0x8, 2, out);
    out.extend_from_slice(&1000u16.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    use super::*;

    /// Whether tungstenite accepts `payload` as a close frame's, as
    /// `Frame::into_close` and `CloseCode::is_allowed` decide: the
    /// reference the decoder must agree with.
    fn tungstenite_accepts_close(payload: &[u8]) -> bool {
        match payload {
            [] => true,
            [_] => false,
            [high, low, reason @ ..] => {
                CloseCode::from(u16::from_be_bytes([*high, *low])).is_allowed()
                    && std::str::from_utf8(reason).is_ok()
            }
        }
    }

    /// Appends a client frame's first byte, its mask bit and its payload
    /// length (the shortest encoding).
    fn put_header(out: &mut Vec<u8>, first: u8, masked: bool, len: usize) {
        out.push(first);
        let mask_bit = if masked { 0x80 } else { 0 };
        match len {
            0..=125 => out.push(mask_bit | len as u8),
            126..=0xffff => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
    }

    /// A client frame: masked with a fixed key.
    fn client_frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let key = [0x37, 0xfa, 0x21, 0x3d];
        let mut out = Vec::new();
        put_header(&mut out, (u8::from(fin) << 7) | opcode, true, payload.len());
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i & 3]));
        out
    }

    fn decode_all(wire: &[u8], max: usize) -> Result<Vec<WsIncoming>, ProtocolError> {
        let mut buf = BytesMut::new();
        let mut partial = None;
        let mut got = Vec::new();
        // One byte at a time: every split must work.
        for byte in wire {
            buf.extend_from_slice(&[*byte]);
            while let Some(incoming) = decode_client_frame(&mut buf, &mut partial, max)? {
                got.push(incoming);
            }
        }
        assert!(buf.is_empty(), "every byte taken");
        Ok(got)
    }

    #[test]
    fn decodes_messages_fragments_and_control_frames_in_any_split() {
        let big = vec![7u8; 70_000];
        let mut wire = client_frame(true, 2, b"one");
        wire.extend(client_frame(false, 2, b"fr"));
        wire.extend(client_frame(true, 9, b"ping!"));
        wire.extend(client_frame(false, 0, b"agm"));
        wire.extend(client_frame(true, 0, b"ents"));
        wire.extend(client_frame(true, 2, &big));
        wire.extend(client_frame(true, 2, b""));
        wire.extend(client_frame(true, 10, b""));
        wire.extend(client_frame(true, 8, &1000u16.to_be_bytes()));
        assert_eq!(
            decode_all(&wire, 100_000).unwrap(),
            [
                WsIncoming::Message(Bytes::from_static(b"one")),
                WsIncoming::Ping(Bytes::from_static(b"ping!")),
                WsIncoming::Message(Bytes::from_static(b"fragments")),
                WsIncoming::Message(Bytes::from(big)),
                WsIncoming::Message(Bytes::new()),
                WsIncoming::Pong,
                WsIncoming::Close,
            ]
        );
    }

    #[test]
    fn refuses_what_a_client_may_not_send() {
        let unmasked = {
            let mut frame = client_frame(true, 2, b"x");
            frame[1] &= 0x7f;
            frame
        };
        let reserved_bit = {
            let mut frame = client_frame(true, 2, b"x");
            frame[0] |= 0x40;
            frame
        };
        let cases: [(&str, Vec<u8>, ProtocolError); 11] = [
            ("text", client_frame(true, 1, b"hi"), TEXT_MESSAGE),
            ("unmasked", unmasked, MALFORMED_WEBSOCKET),
            ("reserved bit", reserved_bit, MALFORMED_WEBSOCKET),
            (
                "reserved opcode",
                client_frame(true, 3, b"x"),
                MALFORMED_WEBSOCKET,
            ),
            (
                "long ping",
                client_frame(true, 9, &[0; 126]),
                MALFORMED_WEBSOCKET,
            ),
            (
                "fragmented ping",
                client_frame(false, 9, b"x"),
                MALFORMED_WEBSOCKET,
            ),
            (
                "stray continuation",
                client_frame(true, 0, b"x"),
                MALFORMED_WEBSOCKET,
            ),
            (
                "one-byte close",
                client_frame(true, 8, &[3]),
                MALFORMED_WEBSOCKET,
            ),
            (
                "close code 1005",
                client_frame(true, 8, &1005u16.to_be_bytes()),
                MALFORMED_WEBSOCKET,
            ),
            (
                "close code 2999",
                client_frame(true, 8, &2999u16.to_be_bytes()),
                MALFORMED_WEBSOCKET,
            ),
            (
                "close reason not UTF-8",
                client_frame(true, 8, &[0x03, 0xe8, b'o', 0xff]),
                MALFORMED_WEBSOCKET,
            ),
        ];
        for (what, wire, error) in cases {
            assert_eq!(decode_all(&wire, 1024).unwrap_err(), error, "{what}");
        }
        // A new message before the last one ended.
        let mut wire = client_frame(false, 2, b"a");
        wire.extend(client_frame(true, 2, b"b"));
        assert_eq!(decode_all(&wire, 1024).unwrap_err(), MALFORMED_WEBSOCKET);
    }

    #[test]
    fn a_message_over_the_limit_fails_at_its_header_before_any_reservation() {
        // A header declaring 2^40 bytes and nothing more.
        let mut buf = BytesMut::from(&[0x82, 0x80 | 127, 0, 0, 1, 0, 0, 0, 0, 0, 1, 2, 3, 4][..]);
        let mut partial = None;
        assert_eq!(
            decode_client_frame(&mut buf, &mut partial, 4096).unwrap_err(),
            ProtocolError::FrameTooLarge {
                len: 1 << 40,
                max: 4096
            }
        );
        assert!(buf.capacity() < 4096, "nothing reserved for it");
        // Fragments count together.
        let mut wire = client_frame(false, 2, &[1; 600]);
        wire.extend(client_frame(true, 0, &[2; 600]));
        assert_eq!(
            decode_all(&wire, 1000).unwrap_err(),
            ProtocolError::FrameTooLarge {
                len: 1200,
                max: 1000
            }
        );
    }

    #[test]
    fn close_payloads_are_judged_as_tungstenite_judges_them() {
        for code in 0..=u16::MAX {
            let payload = code.to_be_bytes();
            assert_eq!(
                is_valid_close_payload(&payload),
                tungstenite_accepts_close(&payload),
                "code {code}"
            );
        }
        for payload in [
            &b""[..],
            b"\x03",
            b"\x03\xe8bye",
            b"\x03\xe8caf\xc3\xa9",
            b"\x03\xe8caf\xc3",
            b"\x03\xe8\xed\xa0\x80",
            b"\x0f\xa0\xff",
        ] {
            assert_eq!(
                is_valid_close_payload(payload),
                tungstenite_accepts_close(payload),
                "{}",
                payload.escape_ascii()
            );
        }
        assert!(is_valid_close_payload(b"\x03\xe8caf\xc3\xa9"));
        assert!(!is_valid_close_payload(b"\x03\xe8caf\xc3"));
    }

    #[test]
    fn encodes_server_frames_unmasked() {
        let mut out = BytesMut::new();
        encode_binary(b"abc", &mut out);
        encode_binary(&[0; 300], &mut out);
        encode_pong(b"p", &mut out);
        encode_close(&mut out);
        assert_eq!(&out[..5], &[0x82, 3, b'a', b'b', b'c']);
        assert_eq!(&out[5..9], &[0x82, 126, 1, 44]);
        assert_eq!(&out[309..], &[0x8a, 1, b'p', 0x88, 2, 0x03, 0xe8]);
    }

    /// What a generated client frame is.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Kind {
        Binary,
        Continuation,
        Text,
        Ping,
        Pong,
        Close,
        /// Opcodes 3–7 and 11–15.
        Reserved(u8),
    }

    impl Kind {
        fn opcode(self) -> u8 {
            match self {
                Self::Binary => 2,
                Self::Continuation => 0,
                Self::Text => 1,
                Self::Ping => 9,
                Self::Pong => 10,
                Self::Close => 8,
                Self::Reserved(opcode) => opcode,
            }
        }
    }

    /// A client frame as the tests describe it, before it is put on the
    /// wire.
    #[derive(Debug, Clone)]
    struct Spec {
        kind: Kind,
        fin: bool,
        payload: Vec<u8>,
        masked: bool,
        reserved_bits: bool,
        mask: [u8; 4],
    }

    impl Spec {
        fn wire(&self, out: &mut Vec<u8>) {
            let reserved = if self.reserved_bits { 0x40 } else { 0 };
            let first = (u8::from(self.fin) << 7) | reserved | self.kind.opcode();
            put_header(out, first, self.masked, self.payload.len());
            if self.masked {
                out.extend_from_slice(&self.mask);
                out.extend(
                    self.payload
                        .iter()
                        .enumerate()
                        .map(|(i, b)| b ^ self.mask[i & 3]),
                );
            } else {
                out.extend_from_slice(&self.payload);
            }
        }
    }

    /// What RFC 6455 and this module's contract say a run of frames comes
    /// to: the things decoded, then the error that ends it (if any).
    fn expected(specs: &[Spec], max: usize) -> (Vec<WsIncoming>, Option<ProtocolError>) {
        let mut got = Vec::new();
        let mut partial: Option<Vec<u8>> = None;
        for spec in specs {
            if spec.reserved_bits || !spec.masked {
                return (got, Some(MALFORMED_WEBSOCKET));
            }
            let len = spec.payload.len();
            match spec.kind {
                Kind::Ping | Kind::Pong | Kind::Close if !spec.fin || len > 125 => {
                    return (got, Some(MALFORMED_WEBSOCKET));
                }
                Kind::Close if !tungstenite_accepts_close(&spec.payload) => {
                    return (got, Some(MALFORMED_WEBSOCKET));
                }
                Kind::Ping => got.push(WsIncoming::Ping(Bytes::from(spec.payload.clone()))),
                Kind::Pong => got.push(WsIncoming::Pong),
                Kind::Close => got.push(WsIncoming::Close),
                Kind::Text => return (got, Some(TEXT_MESSAGE)),
                Kind::Reserved(_) => return (got, Some(MALFORMED_WEBSOCKET)),
                Kind::Binary | Kind::Continuation => {
                    let so_far = match (&partial, spec.kind) {
                        (Some(_), Kind::Binary) | (None, Kind::Continuation) => {
                            return (got, Some(MALFORMED_WEBSOCKET));
                        }
                        (Some(message), _) => message.len(),
                        (None, _) => 0,
                    };
                    if so_far + len > max {
                        let error = ProtocolError::FrameTooLarge {
                            len: (so_far + len) as u64,
                            max,
                        };
                        return (got, Some(error));
                    }
                    let mut message = partial.take().unwrap_or_default();
                    message.extend_from_slice(&spec.payload);
                    if spec.fin {
                        got.push(WsIncoming::Message(Bytes::from(message)));
                    } else {
                        partial = Some(message);
                    }
                }
            }
        }
        (got, None)
    }

    /// Decodes `wire` fed in pieces of the given sizes (cycled), checking
    /// on the way that a message in progress never passes `max`.
    fn decode_in_pieces(
        wire: &[u8],
        pieces: &[usize],
        max: usize,
    ) -> (Vec<WsIncoming>, Option<ProtocolError>) {
        let mut buf = BytesMut::new();
        let mut partial = None;
        let mut got = Vec::new();
        let mut at = 0;
        for &piece in pieces.iter().cycle() {
            if at == wire.len() {
                break;
            }
            let end = (at + piece.max(1)).min(wire.len());
            buf.extend_from_slice(&wire[at..end]);
            at = end;
            loop {
                match decode_client_frame(&mut buf, &mut partial, max) {
                    Ok(Some(incoming)) => got.push(incoming),
                    Ok(None) => break,
                    Err(error) => return (got, Some(error)),
                }
                assert!(partial.as_ref().is_none_or(|m: &BytesMut| m.len() <= max));
            }
        }
        (got, None)
    }

    fn kind() -> impl Strategy<Value = Kind> {
        prop_oneof![
            6 => Just(Kind::Binary),
            4 => Just(Kind::Continuation),
            3 => Just(Kind::Ping),
            2 => Just(Kind::Pong),
            1 => Just(Kind::Close),
            1 => Just(Kind::Text),
            1 => prop_oneof![3u8..=7, 11u8..=15].prop_map(Kind::Reserved),
        ]
    }

    fn spec() -> impl Strategy<Value = Spec> {
        (
            kind(),
            prop::bool::weighted(0.7),
            prop_oneof![
                8 => prop::collection::vec(any::<u8>(), 0..140),
                // The edges of the length encodings, of control frames and
                // of the limits below.
                4 => prop::sample::select(&[125usize, 126, 127, 0xffff, 0x10000][..])
                    .prop_map(|len| vec![0x5a; len]),
                1 => prop::collection::vec(any::<u8>(), 120..70_000),
                // A close frame's payload: a code allowed or not, and a
                // reason in UTF-8 (at most 30 characters, 120 bytes).
                3 => (
                    prop::sample::select(
                        &[0u16, 999, 1000, 1003, 1004, 1005, 1006, 1011, 1013, 1014,
                          1015, 1016, 2999, 3000, 4999, 5000][..],
                    ),
                    prop::collection::vec(any::<char>(), 0..30),
                )
                    .prop_map(|(code, reason)| {
                        let mut payload = code.to_be_bytes().to_vec();
                        payload.extend(reason.into_iter().collect::<String>().bytes());
                        payload
                    }),
            ],
            prop::bool::weighted(0.97),
            prop::bool::weighted(0.03),
            any::<[u8; 4]>(),
        )
            .prop_map(|(kind, fin, payload, masked, reserved_bits, mask)| Spec {
                kind,
                fin,
                payload,
                masked,
                reserved_bits,
                mask,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Any run of client frames, valid or not, cut anywhere, decodes to
        /// what the specification says, and stops at the first violation.
        #[test]
        fn any_run_of_frames_cut_anywhere_decodes_as_specified(
            specs in prop::collection::vec(spec(), 1..12),
            pieces in prop::collection::vec(1usize..200, 1..8),
            max in prop::sample::select(&[100usize, 125, 126, 1_000, 0x10000, 100_000][..]),
        ) {
            let mut wire = Vec::new();
            for spec in &specs {
                spec.wire(&mut wire);
            }
            prop_assert_eq!(decode_in_pieces(&wire, &pieces, max), expected(&specs, max));
        }

        /// Arbitrary bytes never panic the decoder, and what it decodes
        /// does not depend on how the bytes were cut.
        #[test]
        fn arbitrary_bytes_decode_the_same_however_they_are_cut(
            wire in prop::collection::vec(any::<u8>(), 0..600),
            pieces in prop::collection::vec(1usize..64, 1..8),
        ) {
            let whole = decode_in_pieces(&wire, &[wire.len().max(1)], 1_000);
            prop_assert_eq!(decode_in_pieces(&wire, &pieces, 1_000), whole);
        }
    }
}
