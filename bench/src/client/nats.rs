//! The same sessions in NATS's client protocol, for measuring
//! `nats-server` with this load generator, in the same runs and on the same
//! machine as `sessiond` (`session-bench run --nats-server <binary>`).
//!
//! What each of our protocol's steps becomes:
//!
//! | `sessiond` | NATS |
//! |---|---|
//! | login as `load-<i>` | `CONNECT` (not verbose, no echo), `SUB load-<i> 1` and `PING` in one write, without waiting for the server's `INFO` (which it sends first anyway): online at the `PONG`, one round trip as for a login |
//! | heartbeat | `PING` after a keep-alive interval of the heartbeat's length without sending, answered by `PONG`; the server's own `PING` is answered too |
//! | request `to load-<i> <body>`, its response | `PUB load-<i>` with the payload `<publisher>: <body>`, the event `sessiond` would relay; NATS has no answer to a publish, so it counts as answered once written |
//! | event, its acknowledgement | `MSG` received; NATS has no acknowledgement |
//!
//! Only what these sessions need is implemented. A line longer than
//! [`MAX_LINE`] or a message longer than [`MAX_PAYLOAD`] ends the session.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

use super::{Ended, READ_RESERVE, Session, Take, Target, arm, broker_connect, broker_write};

/// The longest protocol line accepted (an `INFO` is a few hundred bytes).
pub const MAX_LINE: usize = 4096;
/// The largest message accepted (`nats-server`'s default `max_payload`).
pub const MAX_PAYLOAD: usize = 1024 * 1024;

/// One operation from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `INFO {...}`.
    Info,
    /// `MSG <subject> <sid> [reply-to] <bytes>` and its payload.
    Msg(Bytes),
    /// `PING`: to be answered with `PONG`.
    Ping,
    /// `PONG`.
    Pong,
    /// `+OK` (verbose mode only).
    Ok,
    /// `-ERR '<message>'`.
    Err(String),
}

/// Appends the opening of a session: `CONNECT`, then `SUB <subject> 1` if
/// `subscribe` names one, then `PING`.
pub fn open(out: &mut BytesMut, name: &str, subscribe: Option<&str>) {
    let _ = write!(
        Writer(out),
        "CONNECT {{\"verbose\":false,\"pedantic\":false,\"echo\":false,\"name\":\"{name}\",\
         \"lang\":\"rust\",\"version\":\"0.1.0\",\"protocol\":1}}\r\n"
    );
    if let Some(subject) = subscribe {
        let _ = write!(Writer(out), "SUB {subject} 1\r\n");
    }
    out.put_slice(b"PING\r\n");
}

/// Appends `PUB <subject> <len>` and the payload.
pub fn publish(out: &mut BytesMut, subject: &str, payload: &[u8]) {
    let _ = write!(Writer(out), "PUB {subject} {}\r\n", payload.len());
    out.put_slice(payload);
    out.put_slice(b"\r\n");
}

struct Writer<'a>(&'a mut BytesMut);

impl std::fmt::Write for Writer<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.put_slice(s.as_bytes());
        Ok(())
    }
}

/// Takes the next whole operation off the front of `buf`: `Ok(None)` while
/// it is incomplete, an error for a line or payload over its limit
/// (checked before it has all arrived) or a line that does not parse.
/// Operations these sessions do not use are skipped.
pub fn decode(buf: &mut BytesMut) -> Result<Option<Op>, String> {
    loop {
        let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
            if buf.len() > MAX_LINE {
                return Err(format!("nats: a line over {MAX_LINE} bytes"));
            }
            return Ok(None);
        };
        if end > MAX_LINE {
            return Err(format!("nats: a line of {end} bytes"));
        }
        let line = &buf[..end];
        let verb = line
            .split(|&b| b == b' ' || b == b'\t')
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        let op = match verb.as_slice() {
            b"MSG" => {
                let text = std::str::from_utf8(line).map_err(|_| "nats: MSG not UTF-8")?;
                let fields: Vec<&str> = text.split_ascii_whitespace().collect();
                if !(4..=5).contains(&fields.len()) {
                    return Err(format!("nats: bad MSG line {text:?}"));
                }
                let len: usize = fields[fields.len() - 1]
                    .parse()
                    .map_err(|_| format!("nats: bad MSG length in {text:?}"))?;
                if len > MAX_PAYLOAD {
                    return Err(format!("nats: a message of {len} bytes"));
                }
                if buf.len() < end + 2 + len + 2 {
                    return Ok(None);
                }
                if &buf[end + 2 + len..end + 2 + len + 2] != b"\r\n" {
                    return Err("nats: MSG payload not followed by CRLF".into());
                }
                buf.advance(end + 2);
                let payload = buf.split_to(len).freeze();
                buf.advance(2);
                return Ok(Some(Op::Msg(payload)));
            }
            b"PING" => Some(Op::Ping),
            b"PONG" => Some(Op::Pong),
            b"+OK" => Some(Op::Ok),
            b"INFO" => Some(Op::Info),
            b"-ERR" => Some(Op::Err(
                String::from_utf8_lossy(&line[4..]).trim().to_owned(),
            )),
            _ => None,
        };
        buf.advance(end + 2);
        if let Some(op) = op {
            return Ok(Some(op));
        }
    }
}

impl Session {
    /// [`Session::drive`] in NATS.
    pub(super) async fn drive_nats(
        &mut self,
        target: &Target,
        mut stop: watch::Receiver<bool>,
    ) -> Ended {
        let started = Instant::now();
        let mut stream = match broker_connect(target, &mut stop).await {
            Ok(stream) => stream,
            Err(ended) => return ended,
        };
        let (keep_alive, plan) = self.broker_role();
        let mut out = BytesMut::new();
        let subject = plan.is_none().then_some(self.spec.user.as_str());
        open(&mut out, &self.spec.user, subject);
        let mut inbox = BytesMut::new();
        let ping = tokio::time::sleep_until((Instant::now() + keep_alive).into());
        tokio::pin!(ping);
        let far = Instant::now() + Duration::from_secs(86_400);
        let pace = tokio::time::sleep_until(far.into());
        tokio::pin!(pace);
        let mut pace_armed = far;
        let mut to = String::new();
        loop {
            let mut wait_for_pace = false;
            if let (Some(plan), true) = (&plan, self.online) {
                let now = Instant::now();
                // NATS does not answer a publish: the window is the
                // socket's, through the write below.
                for _ in 0..plan.window {
                    match plan.take(now) {
                        Take::Message(i) => {
                            let (user, payload) = plan.event(i, &self.spec.user);
                            to.clear();
                            let _ = write!(to, "load-{user}");
                            publish(&mut out, &to, &payload);
                            plan.answered(Ok(b"delivered to 1 sessions"));
                        }
                        Take::Later(at) => {
                            wait_for_pace = true;
                            arm(pace.as_mut(), &mut pace_armed, at);
                            break;
                        }
                        Take::Done => break,
                    }
                }
            }
            if !out.is_empty() {
                if let Err(ended) = broker_write(&mut stream, &mut out).await {
                    return ended;
                }
                ping.as_mut().reset((Instant::now() + keep_alive).into());
            }
            // A publisher that has more to send goes round again at once.
            let more = plan
                .as_ref()
                .is_some_and(|p| self.online && !wait_for_pace && p.sent() < p.total);
            tokio::select! {
                biased;
                _ = stop.changed() => return Ended::Stopped,
                read = async {
                    inbox.reserve(READ_RESERVE);
                    stream.read_buf(&mut inbox).await
                } => match read {
                    Ok(0) => return self.closed_by_server(),
                    Ok(_) => loop {
                        match decode(&mut inbox) {
                            Ok(Some(Op::Msg(payload))) => self.tally.event(&payload),
                            Ok(Some(Op::Ping)) => out.put_slice(b"PONG\r\n"),
                            Ok(Some(Op::Pong)) => self.went_online(started),
                            Ok(Some(Op::Err(message))) => {
                                return Ended::Failed(format!("nats: -ERR {message}"));
                            }
                            Ok(Some(Op::Info | Op::Ok)) => {}
                            Ok(None) => break,
                            Err(kind) => return Ended::Failed(kind),
                        }
                    },
                    Err(e) => return Ended::Failed(format!("read: {e}")),
                },
                () = &mut ping => out.put_slice(b"PING\r\n"),
                () = &mut pace, if wait_for_pace => {}
                () = tokio::task::yield_now(), if more => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_opening_is_connect_sub_ping() {
        let mut out = BytesMut::new();
        open(&mut out, "load-7", Some("load-7"));
        let text = std::str::from_utf8(&out).unwrap();
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert!(lines[0].starts_with("CONNECT {"));
        assert!(lines[0].contains("\"verbose\":false"));
        assert!(lines[0].contains("\"name\":\"load-7\""));
        assert_eq!(&lines[1..], ["SUB load-7 1", "PING", ""]);
        let mut out = BytesMut::new();
        publish(&mut out, "load-3", b"ab");
        assert_eq!(&out[..], b"PUB load-3 2\r\nab\r\n");
    }

    #[test]
    fn operations_come_whole_however_the_bytes_are_cut() {
        let payload = "x".repeat(300);
        let wire = format!(
            "INFO {{\"server_id\":\"a\"}}\r\n+OK\r\nMSG load-1 1 300\r\n{payload}\r\n\
             PING\r\nMSG load-1 1 _INBOX.r 2\r\nhi\r\nPONG\r\n-ERR 'Slow Consumer'\r\n"
        );
        for (cut, got, rest) in super::super::decoded_at_every_cut(wire.as_bytes(), decode) {
            assert_eq!(
                got,
                [
                    Op::Info,
                    Op::Ok,
                    Op::Msg(Bytes::from(payload.clone())),
                    Op::Ping,
                    Op::Msg(Bytes::from_static(b"hi")),
                    Op::Pong,
                    Op::Err("'Slow Consumer'".into()),
                ],
                "cut {cut}"
            );
            assert!(rest.is_empty(), "cut {cut}");
        }
    }

    #[test]
    fn oversized_or_malformed_input_is_refused_before_it_arrives() {
        let mut buf = BytesMut::from(&b"MSG a 1 2000000\r\n"[..]);
        assert!(decode(&mut buf).is_err());
        let mut buf = BytesMut::from(&b"MSG a 1 x\r\n"[..]);
        assert!(decode(&mut buf).is_err());
        let mut buf = BytesMut::from(&b"MSG a 1 2\r\nabcd"[..]);
        assert!(decode(&mut buf).is_err());
        let mut buf = BytesMut::from(vec![b'A'; MAX_LINE + 1].as_slice());
        assert!(decode(&mut buf).is_err());
        let mut buf = BytesMut::from(&b"MSG a 1 5\r\nab"[..]);
        assert_eq!(decode(&mut buf), Ok(None));
    }
}
