//! The same sessions in MQTT 3.1.1, for measuring an MQTT broker
//! (mosquitto) with this load generator, in the same runs and on the same
//! machine as `sessiond` (`session-bench run --peer mosquitto`).
//!
//! What each of our protocol's steps becomes:
//!
//! | `sessiond` | MQTT |
//! |---|---|
//! | login as `load-<i>` | `CONNECT` with client id `load-<i>`, clean session, and at once (MQTT lets a client send before `CONNACK`) `SUBSCRIBE` to the topic `load-<i>`: online at `SUBACK`, one round trip as for a login |
//! | heartbeat | `PINGREQ` after a keep-alive interval of the heartbeat's length without sending |
//! | request `to load-<i> <body>`, its response | `PUBLISH` to `load-<i>` with the payload `<publisher>: <body>`, the event `sessiond` would relay; at QoS 1 its `PUBACK` counts as the response, at QoS 0 it counts as answered once written |
//! | event, its acknowledgement | `PUBLISH` received; at QoS 1 answered by a `PUBACK` each |
//!
//! Only what these sessions need is implemented; a packet of another kind
//! is skipped, and one longer than [`MAX_PACKET`] ends the session.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::sync::watch;

use super::{Ended, READ_RESERVE, Session, Take, Target, arm, broker_connect, broker_write};

/// The longest packet accepted, fixed header included.
pub const MAX_PACKET: usize = 64 * 1024;

const CONNECT: u8 = 0x10;
const CONNACK: u8 = 0x20;
const PUBLISH: u8 = 0x30;
const PUBACK: u8 = 0x40;
const SUBSCRIBE: u8 = 0x82;
const SUBACK: u8 = 0x90;
const PINGREQ: u8 = 0xC0;

/// One packet read: its first byte and what follows the remaining length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// Type and flags.
    pub first: u8,
    /// The variable header and payload.
    pub body: Bytes,
}

/// A received `PUBLISH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// Its QoS (0, 1 or 2).
    pub qos: u8,
    /// Its packet id (QoS above 0).
    pub id: Option<u16>,
    /// The topic name.
    pub topic: Bytes,
    /// The application message.
    pub payload: Bytes,
}

fn put_len(out: &mut BytesMut, mut len: usize) {
    loop {
        let byte = (len % 128) as u8;
        len /= 128;
        if len == 0 {
            out.put_u8(byte);
            return;
        }
        out.put_u8(byte | 0x80);
    }
}

fn put_str(out: &mut BytesMut, s: &[u8]) {
    out.put_u16(s.len() as u16);
    out.put_slice(s);
}

/// Appends a `CONNECT` (MQTT 3.1.1, clean session, no credentials).
pub fn connect(out: &mut BytesMut, client_id: &str, keep_alive_s: u16) {
    out.put_u8(CONNECT);
    put_len(out, 10 + 2 + client_id.len());
    put_str(out, b"MQTT");
    out.put_u8(4);
    out.put_u8(0x02);
    out.put_u16(keep_alive_s);
    put_str(out, client_id.as_bytes());
}

/// Appends a `SUBSCRIBE` to one topic filter.
pub fn subscribe(out: &mut BytesMut, id: u16, filter: &str, qos: u8) {
    out.put_u8(SUBSCRIBE);
    put_len(out, 2 + 2 + filter.len() + 1);
    out.put_u16(id);
    put_str(out, filter.as_bytes());
    out.put_u8(qos);
}

/// Appends a `PUBLISH` (`id` is required above QoS 0 and ignored at it).
pub fn publish(out: &mut BytesMut, topic: &[u8], qos: u8, id: u16, payload: &[u8]) {
    out.put_u8(PUBLISH | (qos << 1));
    let id_len = if qos > 0 { 2 } else { 0 };
    put_len(out, 2 + topic.len() + id_len + payload.len());
    put_str(out, topic);
    if qos > 0 {
        out.put_u16(id);
    }
    out.put_slice(payload);
}

/// Appends a `PUBACK`.
pub fn puback(out: &mut BytesMut, id: u16) {
    out.put_u8(PUBACK);
    out.put_u8(2);
    out.put_u16(id);
}

/// Appends a `PINGREQ`.
pub fn pingreq(out: &mut BytesMut) {
    out.put_slice(&[PINGREQ, 0]);
}

/// Takes the next whole packet off the front of `buf`: `Ok(None)` while
/// it is incomplete, an error for a remaining length over four bytes or a
/// packet over [`MAX_PACKET`] (checked before it has all arrived).
pub fn decode(buf: &mut BytesMut) -> Result<Option<Packet>, String> {
    let mut len = 0usize;
    let mut header = 1;
    loop {
        let Some(&byte) = buf.get(header) else {
            return Ok(None);
        };
        len |= usize::from(byte & 0x7F) << (7 * (header - 1));
        header += 1;
        if byte & 0x80 == 0 {
            break;
        }
        if header == 5 {
            return Err("mqtt: remaining length over four bytes".into());
        }
    }
    if header + len > MAX_PACKET {
        return Err(format!("mqtt: packet of {} bytes", header + len));
    }
    if buf.len() < header + len {
        return Ok(None);
    }
    let first = buf[0];
    buf.advance(header);
    Ok(Some(Packet {
        first,
        body: buf.split_to(len).freeze(),
    }))
}

impl Packet {
    /// The packet's type, the high four bits.
    pub fn kind(&self) -> u8 {
        self.first & 0xF0
    }

    /// The packet id at the start of the body (`PUBACK`, `SUBACK`).
    pub fn id(&self) -> Option<u16> {
        let b = self.body.get(..2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }

    /// Reads a `PUBLISH`.
    pub fn publish(&self) -> Result<Publish, String> {
        let qos = (self.first >> 1) & 3;
        let mut body = self.body.clone();
        if body.len() < 2 {
            return Err("mqtt: short publish".into());
        }
        let topic_len = usize::from(body.get_u16());
        let id_len = if qos > 0 { 2 } else { 0 };
        if body.len() < topic_len + id_len {
            return Err("mqtt: short publish".into());
        }
        let topic = body.split_to(topic_len);
        let id = (qos > 0).then(|| body.get_u16());
        Ok(Publish {
            qos,
            id,
            topic,
            payload: body,
        })
    }
}

impl Session {
    /// [`Session::drive`] in MQTT at `qos`.
    pub(super) async fn drive_mqtt(
        &mut self,
        target: &Target,
        qos: u8,
        mut stop: watch::Receiver<bool>,
    ) -> Ended {
        let started = Instant::now();
        let mut stream = match broker_connect(target, &mut stop).await {
            Ok(stream) => stream,
            Err(ended) => return ended,
        };
        let (keep_alive, plan) = self.broker_role();
        let mut out = BytesMut::new();
        connect(
            &mut out,
            &self.spec.user,
            u16::try_from(keep_alive.as_secs()).unwrap_or(u16::MAX),
        );
        if plan.is_none() {
            subscribe(&mut out, 1, &self.spec.user, qos);
        }
        let mut inbox = BytesMut::new();
        let mut last_write = Instant::now();
        let ping = tokio::time::sleep_until((last_write + keep_alive).into());
        tokio::pin!(ping);
        let far = Instant::now() + Duration::from_secs(86_400);
        let pace = tokio::time::sleep_until(far.into());
        tokio::pin!(pace);
        let mut pace_armed = far;
        let mut next_id: u16 = 0;
        let mut in_flight = 0usize;
        let mut topic = String::new();
        loop {
            let mut wait_for_pace = false;
            if let (Some(plan), true) = (&plan, self.online) {
                let now = Instant::now();
                // At QoS 0 nothing answers a publish: a turn sends at most
                // a window's worth, and the socket's window does the rest.
                let mut this_turn = 0;
                while in_flight < plan.window && this_turn < plan.window {
                    this_turn += 1;
                    match plan.take(now) {
                        Take::Message(i) => {
                            let (to, payload) = plan.event(i, &self.spec.user);
                            topic.clear();
                            let _ = write!(topic, "load-{to}");
                            next_id = next_id.checked_add(1).unwrap_or(1);
                            publish(&mut out, topic.as_bytes(), qos, next_id, &payload);
                            if qos == 0 {
                                plan.answered(Ok(b"delivered to 1 sessions"));
                            } else {
                                in_flight += 1;
                            }
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
                last_write = Instant::now();
                ping.as_mut().reset((last_write + keep_alive).into());
            }
            // A publisher that has more to send goes round again at once.
            let more = plan.as_ref().is_some_and(|p| {
                self.online && !wait_for_pace && in_flight < p.window && p.sent() < p.total
            });
            tokio::select! {
                biased;
                _ = stop.changed() => return Ended::Stopped,
                read = async {
                    inbox.reserve(READ_RESERVE);
                    stream.read_buf(&mut inbox).await
                } => match read {
                    Ok(0) => return self.closed_by_server(),
                    Ok(_) => loop {
                        let packet = match decode(&mut inbox) {
                            Ok(Some(packet)) => packet,
                            Ok(None) => break,
                            Err(kind) => return Ended::Failed(kind),
                        };
                        match packet.kind() {
                            CONNACK => match packet.body.get(1) {
                                Some(0) if plan.is_some() => self.went_online(started),
                                Some(0) => {}
                                code => return Ended::Failed(format!("login failed: connack {code:?}")),
                            },
                            SUBACK => match packet.body.get(2) {
                                Some(&code) if code < 0x80 => self.went_online(started),
                                code => return Ended::Failed(format!("login failed: suback {code:?}")),
                            },
                            PUBLISH => {
                                let publish = match packet.publish() {
                                    Ok(publish) => publish,
                                    Err(kind) => return Ended::Failed(kind),
                                };
                                self.tally.event(&publish.payload);
                                if let Some(id) = publish.id {
                                    puback(&mut out, id);
                                }
                            }
                            PUBACK => {
                                if let Some(plan) = &plan {
                                    in_flight = in_flight.saturating_sub(1);
                                    plan.answered(Ok(b"delivered to 1 sessions"));
                                }
                            }
                            _ => {}
                        }
                    },
                    Err(e) => return Ended::Failed(format!("read: {e}")),
                },
                () = &mut ping => {
                    pingreq(&mut out);
                }
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
    fn a_publish_reads_back_at_each_qos() {
        for qos in [0, 1] {
            let mut buf = BytesMut::new();
            publish(&mut buf, b"load-42", qos, 7, b"load-pub: hello");
            let packet = decode(&mut buf).unwrap().unwrap();
            assert!(buf.is_empty());
            assert_eq!(packet.kind(), PUBLISH);
            let read = packet.publish().unwrap();
            assert_eq!(read.qos, qos);
            assert_eq!(read.id, (qos > 0).then_some(7));
            assert_eq!(&read.topic[..], b"load-42");
            assert_eq!(&read.payload[..], b"load-pub: hello");
        }
    }

    #[test]
    fn connect_is_the_bytes_of_the_standard() {
        // MQTT 3.1.1, section 3.1: protocol name, level 4, clean session,
        // keep-alive, client id.
        let mut buf = BytesMut::new();
        connect(&mut buf, "ab", 30);
        assert_eq!(
            &buf[..],
            &[
                0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 30, 0, 2, b'a', b'b'
            ]
        );
        let mut buf = BytesMut::new();
        subscribe(&mut buf, 1, "t", 1);
        assert_eq!(&buf[..], &[0x82, 6, 0, 1, 0, 1, b't', 1]);
    }

    #[test]
    fn packets_come_whole_however_the_bytes_are_cut() {
        let mut wire = BytesMut::new();
        let long = vec![b'x'; 300];
        publish(&mut wire, b"t", 1, 9, &long);
        puback(&mut wire, 5);
        pingreq(&mut wire);
        for (cut, got, rest) in super::super::decoded_at_every_cut(&wire, decode) {
            assert!(rest.is_empty(), "cut {cut}");
            assert_eq!(got.len(), 3, "cut {cut}");
            assert_eq!(got[0].publish().unwrap().payload.len(), 300);
            assert_eq!((got[1].kind(), got[1].id()), (PUBACK, Some(5)));
            assert_eq!(got[2].first, PINGREQ);
        }
    }

    #[test]
    fn an_oversized_or_malformed_length_is_refused_before_it_arrives() {
        let mut buf = BytesMut::from(&[PUBLISH, 0xFF, 0xFF, 0xFF, 0xFF, 0x01][..]);
        assert!(decode(&mut buf).is_err());
        // 65,536 bytes announced, two present.
        let mut buf = BytesMut::from(&[PUBLISH, 0x80, 0x80, 0x04, 0, 0][..]);
        assert!(decode(&mut buf).is_err());
        let mut buf = BytesMut::from(&[PUBLISH, 0x80][..]);
        assert_eq!(decode(&mut buf), Ok(None));
        // A publish whose topic runs past its end.
        let mut buf = BytesMut::from(&[PUBLISH, 2, 0, 9][..]);
        let packet = decode(&mut buf).unwrap().unwrap();
        assert!(packet.publish().is_err());
    }
}
