//! The session wire protocol, package `session.v1`, as prost types.
//!
//! `proto/session.proto` is the source of truth; `src/session.v1.rs` is
//! generated from it by `cargo xtask codegen` and checked in, so building this
//! crate needs no `protoc`.
//!
//! A client sends [`v1::ClientFrame`]s and a server sends
//! [`v1::ServerFrame`]s, one protobuf message per frame. `bytes` fields are
//! [`bytes::Bytes`], so decoding from a `Bytes` buffer does not copy payloads.
//!
//! ```
//! use prost::Message;
//! use session_proto::v1::{client_frame::Kind, ClientFrame, Heartbeat};
//!
//! let frame = ClientFrame {
//!     kind: Some(Kind::Heartbeat(Heartbeat { ack_event_seq: 7, ack_request_id: 0 })),
//! };
//! let bytes = frame.encode_to_vec();
//! assert!(bytes.len() <= 4, "a heartbeat is a few bytes");
//! assert_eq!(ClientFrame::decode(bytes.as_slice()).unwrap(), frame);
//! ```

pub use prost;

/// The messages of `session.v1`.
pub mod v1 {
    // Generated code: its items are documented by the comments in the .proto.
    #![allow(missing_docs, unreachable_pub, clippy::all, rust_2018_idioms)]
    include!("session.v1.rs");
}

/// The protocol version this crate speaks, sent in `Login.protocol_version`.
pub const PROTOCOL_VERSION: u32 = 1;

// `Debug` for the messages that carry a secret (`Login.credential`, the
// resume tokens): everything but the secret, whose length alone is shown,
// so that a logged frame or a `{:?}` of a session cannot leak it. The code
// generator skips the derived impls for these (`xtask/src/codegen.rs`).

/// Stands in for a secret in `Debug` output: its length only.
struct Redacted(usize);

impl core::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "<redacted, {} bytes>", self.0)
    }
}

impl core::fmt::Debug for v1::Login {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Login")
            .field("protocol_version", &self.protocol_version)
            .field("user_id", &self.user_id)
            .field("credential", &Redacted(self.credential.len()))
            .field("device", &self.device)
            .field("requested_heartbeat_ms", &self.requested_heartbeat_ms)
            .field("resume", &self.resume)
            .field("properties", &self.properties)
            .finish()
    }
}

impl core::fmt::Debug for v1::Resume {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Resume")
            .field("session_id", &self.session_id)
            .field("resume_token", &Redacted(self.resume_token.len()))
            .field("last_event_seq", &self.last_event_seq)
            .finish()
    }
}

impl core::fmt::Debug for v1::LoginOk {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("LoginOk")
            .field("session_id", &self.session_id)
            .field("resume_token", &Redacted(self.resume_token.len()))
            .field("heartbeat_ms", &self.heartbeat_ms)
            .field("session_timeout_ms", &self.session_timeout_ms)
            .field("resumed", &self.resumed)
            .field("next_event_seq", &self.next_event_seq)
            .field("server_time_ms", &self.server_time_ms)
            .field("max_pending_requests", &self.max_pending_requests)
            .field("max_unacked_events", &self.max_unacked_events)
            .field("max_unacked_bytes", &self.max_unacked_bytes)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::v1::{ClientFrame, Login, LoginOk, Resume, ServerFrame, client_frame, server_frame};

    const SECRET: &[u8] = b"hunter2-secret";

    #[test]
    fn debug_output_leaves_secrets_out() {
        let login = ClientFrame {
            kind: Some(client_frame::Kind::Login(Login {
                user_id: "alice".into(),
                credential: SECRET.into(),
                device: "web".into(),
                resume: Some(Resume {
                    session_id: 7,
                    resume_token: SECRET.into(),
                    last_event_seq: 3,
                }),
                ..Login::default()
            })),
        };
        let ok = ServerFrame {
            kind: Some(server_frame::Kind::LoginOk(LoginOk {
                session_id: 7,
                resume_token: SECRET.into(),
                heartbeat_ms: 30_000,
                ..LoginOk::default()
            })),
        };
        for text in [
            format!("{login:?}"),
            format!("{login:#?}"),
            format!("{ok:?}"),
        ] {
            // The bytes as Debug prints them, and as a list of numbers.
            let as_bytes = format!("{:?}", bytes::Bytes::from_static(SECRET));
            let as_numbers = format!("{SECRET:?}");
            assert!(!text.contains("hunter2"), "{text}");
            assert!(
                !text.contains(&as_bytes) && !text.contains(&as_numbers[1..20]),
                "{text}"
            );
            assert!(text.contains("<redacted, 14 bytes>"), "{text}");
        }
        // Everything else is still there.
        let text = format!("{login:?}");
        assert!(
            text.contains("alice") && text.contains("last_event_seq: 3"),
            "{text}"
        );
        assert!(format!("{ok:?}").contains("heartbeat_ms: 30000"));
    }
}
