//! A deterministic in-memory world for the sans-IO core: clients, server
//! sessions, byte-stream links between them and virtual time. Nothing sleeps.
//!
//! The world plays the server's driver and a small backend: it accepts logins
//! whose credential is `secret`, applies the login-conflict rules, resolves
//! resumes through a registry of session ids (or refuses them all, when a
//! test says so), and either echoes requests or holds them for the test to
//! answer.
// Each test binary uses a different part of the harness, and the items are
// `pub` for the test files, not for a published API.
#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use session_core::{
    Admission, ClientConfig, ClientEvent, ClientSession, ClientState, CloseCode, ConflictRules,
    Credentials, FrameDecoder, Framing, RejectCode, ServerConfig, ServerEvent, ServerSession,
    ServerState, SessionId, SplitMix64, Transmit,
};

/// The credential the world's authenticator accepts.
pub const SECRET: &[u8] = b"secret";

/// One connection between a client and a server session slot.
pub struct Link {
    /// The server slot this connection talks to.
    pub slot: usize,
    /// Bytes written by the client, not yet read by the server.
    pub c2s: BytesMut,
    /// Bytes written by the server, not yet read by the client.
    pub s2c: BytesMut,
    client_decoder: FrameDecoder,
    server_decoder: FrameDecoder,
    client_closed: bool,
    server_closed: bool,
    /// The server end closed during a partition; the client was not told.
    server_gone: bool,
    /// While true, bytes written either way are lost (a partition the
    /// endpoints have not noticed).
    pub blackhole: bool,
}

/// A client endpoint and everything it reported.
pub struct Client {
    pub session: ClientSession,
    pub link: Option<Link>,
    pub events: Vec<ClientEvent>,
    /// The resume token of the last `LoginOk` this client received, read
    /// off the wire.
    pub last_token: Option<Bytes>,
}

/// A server session and what it reported.
pub struct Slot {
    pub session: ServerSession,
    pub user: String,
    pub device: String,
    pub events: Vec<ServerEvent>,
    /// A temporary session for a resume login, folded into another slot.
    pub retired: bool,
}

/// An executed request, as the backend saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Execution {
    pub slot: usize,
    pub id: u64,
    pub body: Bytes,
}

pub struct World {
    pub now: Instant,
    pub start: Instant,
    pub rng: SplitMix64,
    pub config: Arc<ServerConfig>,
    pub client_config: ClientConfig,
    pub rules: ConflictRules,
    pub framing: Framing,
    pub clients: Vec<Client>,
    pub slots: Vec<Slot>,
    pub by_id: HashMap<SessionId, usize>,
    /// Echo every request at once (otherwise requests wait in `held`).
    pub echo: bool,
    pub held: Vec<Execution>,
    pub executions: Vec<Execution>,
    /// Every protocol error a server session reported, by slot.
    pub server_errors: Vec<(usize, session_core::ProtocolError)>,
    /// When set, every resume is refused with this code before the
    /// registry is asked (as a server whose failed-login budget for the
    /// address is spent answers `RATE_LIMITED`).
    pub refuse_resumes: Option<RejectCode>,
}

impl World {
    /// A world with the default server configuration.
    pub fn standard() -> Self {
        Self::new(ServerConfig::default())
    }

    pub fn new(config: ServerConfig) -> Self {
        // The epoch of virtual time; nothing reads the clock after this.
        #[allow(clippy::disallowed_methods)]
        let now = Instant::now();
        Self {
            now,
            start: now,
            rng: SplitMix64::new(0x5EED),
            config: Arc::new(config),
            client_config: ClientConfig::default(),
            rules: ConflictRules::default(),
            framing: Framing::Delimited,
            clients: Vec::new(),
            slots: Vec::new(),
            by_id: HashMap::new(),
            echo: true,
            held: Vec::new(),
            executions: Vec::new(),
            server_errors: Vec::new(),
            refuse_resumes: None,
        }
    }

    // ---- set-up ----

    pub fn add_client(&mut self) -> usize {
        self.clients.push(Client {
            session: ClientSession::new(self.client_config.clone()),
            link: None,
            events: Vec::new(),
            last_token: None,
        });
        self.clients.len() - 1
    }

    /// Opens a new connection for client `c` (a fresh server slot).
    pub fn connect(&mut self, c: usize) {
        assert!(
            self.clients[c].link.is_none(),
            "client {c} already connected"
        );
        let session = ServerSession::new(self.now, self.config.clone());
        let pre_login = session.max_frame_len();
        self.slots.push(Slot {
            session,
            user: String::new(),
            device: String::new(),
            events: Vec::new(),
            retired: false,
        });
        let client = &mut self.clients[c];
        client.link = Some(Link {
            slot: self.slots.len() - 1,
            c2s: BytesMut::new(),
            s2c: BytesMut::new(),
            client_decoder: FrameDecoder::new(client.session.max_frame_len()),
            server_decoder: FrameDecoder::new(pre_login),
            client_closed: false,
            server_closed: false,
            server_gone: false,
            blackhole: false,
        });
        client.session.handle_connected(self.now);
        self.settle();
    }

    pub fn credentials(user: &str, device: &str, credential: &[u8]) -> Credentials {
        Credentials {
            user_id: user.into(),
            credential: Bytes::copy_from_slice(credential),
            device: device.into(),
            properties: BTreeMap::new(),
        }
    }

    pub fn login(&mut self, c: usize, user: &str, device: &str) {
        let now = self.now;
        self.clients[c]
            .session
            .login(now, Self::credentials(user, device, SECRET))
            .expect("login starts");
        self.settle();
    }

    /// A new client, connected and online as `user` on `device`.
    pub fn online(&mut self, user: &str, device: &str) -> usize {
        let c = self.add_client();
        self.connect(c);
        self.login(c, user, device);
        assert_eq!(self.clients[c].session.state(), ClientState::Online);
        c
    }

    // ---- faults ----

    /// Both ends notice the connection is gone (a reset).
    pub fn reset(&mut self, c: usize) {
        let Some(link) = self.clients[c].link.take() else {
            return;
        };
        self.clients[c].session.handle_disconnect(self.now);
        self.slots[link.slot].session.handle_disconnect(self.now);
        self.settle();
    }

    /// The client notices the connection is gone; the server does not (a
    /// half-open connection after a partition). Bytes in flight are lost.
    pub fn client_loses_connection(&mut self, c: usize) {
        if self.clients[c].link.take().is_some() {
            self.clients[c].session.handle_disconnect(self.now);
        }
        self.settle();
    }

    /// From now on, every byte written on `c`'s connection is lost, and
    /// neither end is told.
    pub fn partition(&mut self, c: usize) {
        if let Some(link) = &mut self.clients[c].link {
            link.blackhole = true;
            link.c2s.clear();
            link.s2c.clear();
        }
    }

    /// Connects client `c` again and asks it to resume.
    pub fn reconnect_and_resume(&mut self, c: usize) {
        if self.clients[c].link.is_some() {
            self.client_loses_connection(c);
        }
        self.connect(c);
        let now = self.now;
        self.clients[c].session.resume(now).expect("resume starts");
        self.settle();
    }

    // ---- time ----

    /// Moves time forward by `d`, firing every deadline on the way in order.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            self.settle();
            match self.next_deadline() {
                Some(at) if at <= end => {
                    self.now = self.now.max(at);
                    self.fire_timeouts();
                }
                _ => break,
            }
        }
        self.now = end;
        self.settle();
    }

    /// Jumps to the next deadline and fires it; false if there is none.
    pub fn jump(&mut self) -> bool {
        self.settle();
        let Some(at) = self.next_deadline() else {
            return false;
        };
        self.now = self.now.max(at);
        self.fire_timeouts();
        self.settle();
        true
    }

    fn next_deadline(&self) -> Option<Instant> {
        let clients = self.clients.iter().filter_map(|c| c.session.poll_timeout());
        let servers = self
            .slots
            .iter()
            .filter(|s| !s.retired)
            .filter_map(|s| s.session.poll_timeout());
        clients.chain(servers).min()
    }

    fn fire_timeouts(&mut self) {
        let now = self.now;
        for client in &mut self.clients {
            if client.session.poll_timeout().is_some_and(|at| at <= now) {
                client.session.handle_timeout(now);
            }
        }
        for slot in self.slots.iter_mut().filter(|s| !s.retired) {
            if slot.session.poll_timeout().is_some_and(|at| at <= now) {
                slot.session.handle_timeout(now);
            }
        }
    }

    // ---- the network and the backend ----

    /// Steps until nothing moves.
    pub fn settle(&mut self) {
        for _ in 0..10_000 {
            if !self.step() {
                return;
            }
        }
        panic!("the world does not settle");
    }

    /// Moves every queued output one hop; true if anything happened.
    pub fn step(&mut self) -> bool {
        let mut progress = false;
        for c in 0..self.clients.len() {
            progress |= self.step_client(c);
        }
        progress |= self.drain_server_events();
        progress
    }

    fn step_client(&mut self, c: usize) -> bool {
        let now = self.now;
        let framing = self.framing;
        let mut progress = false;
        let client = &mut self.clients[c];
        // Client events are collected whether or not a link exists.
        while let Some(event) = client.session.poll_event() {
            client.events.push(event);
            progress = true;
        }
        let Some(link) = client.link.as_mut() else {
            return progress;
        };
        let slot = &mut self.slots[link.slot];

        // Outputs onto the wire.
        let mut out = BytesMut::new();
        while let Some(transmit) = client.session.poll_transmit(&mut out, framing) {
            progress = true;
            if transmit == Transmit::CloseConnection {
                link.client_closed = true;
                break;
            }
        }
        if !link.blackhole {
            link.c2s.extend_from_slice(&out);
        }
        out.clear();
        while let Some(transmit) = slot
            .session
            .poll_transmit(&mut out, framing)
            .filter(|_| !link.server_gone)
        {
            progress = true;
            if transmit == Transmit::CloseConnection {
                link.server_closed = true;
                break;
            }
        }
        if !link.blackhole {
            link.s2c.extend_from_slice(&out);
        }

        // The server reads unless it closed; the client likewise.
        if !link.server_closed && !link.server_gone && !link.c2s.is_empty() {
            progress = true;
            link.server_decoder
                .set_max_frame_len(slot.session.max_frame_len());
            loop {
                let frame = match framing {
                    Framing::Delimited => match link.server_decoder.decode(&mut link.c2s) {
                        Ok(Some(frame)) => frame,
                        Ok(None) => break,
                        Err(e) => {
                            slot.session.handle_protocol_error(now, e);
                            link.c2s.clear();
                            break;
                        }
                    },
                    Framing::Bare => unreachable!("the harness carries delimited streams"),
                };
                if let Err(e) = slot.session.handle_frame(now, frame) {
                    self.server_errors.push((link.slot, e));
                }
                link.server_decoder
                    .set_max_frame_len(slot.session.max_frame_len());
            }
        }
        if !link.client_closed && !link.s2c.is_empty() {
            progress = true;
            loop {
                match link.client_decoder.decode(&mut link.s2c) {
                    Ok(Some(frame)) => {
                        if let Some(token) = login_ok_token(&frame) {
                            client.last_token = Some(token);
                        }
                        let _ = client.session.handle_frame(now, frame);
                    }
                    Ok(None) => break,
                    Err(e) => {
                        client.session.handle_protocol_error(now, e);
                        link.s2c.clear();
                        break;
                    }
                }
            }
        }
        while let Some(event) = client.session.poll_event() {
            client.events.push(event);
        }

        // During a partition, a close reaches only the end that closed.
        if link.blackhole && link.client_closed {
            client.link = None;
            client.session.handle_disconnect(now);
            return true;
        }
        if link.blackhole && link.server_closed && !link.server_gone {
            link.server_gone = true;
            slot.session.handle_disconnect(now);
            return true;
        }
        // A closed connection: once the closer's bytes were read, both ends
        // learn it is gone.
        let closed = (link.client_closed && link.c2s.is_empty())
            || (link.server_closed && link.s2c.is_empty());
        if closed {
            let slot_index = link.slot;
            client.link = None;
            client.session.handle_disconnect(now);
            self.slots[slot_index].session.handle_disconnect(now);
            progress = true;
        }
        progress
    }

    fn drain_server_events(&mut self) -> bool {
        let mut progress = false;
        for index in 0..self.slots.len() {
            while let Some(event) = self.slots[index].session.poll_event() {
                progress = true;
                self.slots[index].events.push(event.clone());
                self.on_server_event(index, event);
            }
        }
        progress
    }

    fn on_server_event(&mut self, index: usize, event: ServerEvent) {
        let now = self.now;
        match event {
            ServerEvent::LoginRequested(login) => {
                if let Some(resume) = login.resume {
                    if let Some(code) = self.refuse_resumes {
                        self.slots[index]
                            .session
                            .reject_login(code, "try again later")
                            .expect("authenticating");
                        return;
                    }
                    let target = self.by_id.get(&resume.session_id).copied();
                    let result = match target {
                        Some(t) if t != index => self.slots[t]
                            .session
                            .resume(now, &resume, &mut self.rng)
                            .map(|()| t),
                        _ => Err(session_core::ResumeRejected::NotResumable),
                    };
                    match result {
                        Ok(target) => self.retire_into(index, target),
                        Err(_) => {
                            self.slots[index]
                                .session
                                .reject_login(RejectCode::SessionNotFound, "no such session")
                                .expect("authenticating");
                        }
                    }
                    return;
                }
                if login.credential.as_ref() != SECRET {
                    self.slots[index]
                        .session
                        .reject_login(RejectCode::BadCredentials, "bad credentials")
                        .expect("authenticating");
                    return;
                }
                let live: Vec<usize> = self
                    .slots
                    .iter()
                    .enumerate()
                    .filter(|(i, s)| {
                        *i != index
                            && !s.retired
                            && s.user == login.user_id
                            && s.device == login.device
                            && matches!(
                                s.session.state(),
                                ServerState::Open | ServerState::Detached
                            )
                    })
                    .map(|(i, _)| i)
                    .collect();
                match self.rules.admit(&login.device, live.len()) {
                    Admission::Reject => {
                        self.slots[index]
                            .session
                            .reject_login(RejectCode::LoginConflict, "already logged in")
                            .expect("authenticating");
                        return;
                    }
                    Admission::AdmitReplacing => {
                        for old in live {
                            let _ = self.slots[old].session.close(
                                CloseCode::LoginConflict,
                                "logged in elsewhere",
                                None,
                            );
                        }
                    }
                    Admission::Admit => {}
                }
                let slot = &mut self.slots[index];
                slot.user = login.user_id;
                slot.device = login.device;
                let id = slot
                    .session
                    .accept_login(now, login.requested_heartbeat_ms, &mut self.rng)
                    .expect("authenticating");
                self.by_id.insert(id, index);
            }
            ServerEvent::Request { id, body } => {
                let execution = Execution {
                    slot: index,
                    id,
                    body: body.clone(),
                };
                self.executions.push(execution.clone());
                if self.echo {
                    self.slots[index]
                        .session
                        .respond(id, Ok(body))
                        .expect("respond");
                } else {
                    self.held.push(execution);
                }
            }
            _ => {}
        }
    }

    /// The connection that carried a resume login now belongs to `target`.
    fn retire_into(&mut self, temp: usize, target: usize) {
        self.slots[temp].retired = true;
        // A half-open old connection of the target is dropped silently.
        for client in &mut self.clients {
            if let Some(link) = &mut client.link {
                if link.slot == temp {
                    link.slot = target;
                    link.server_decoder
                        .set_max_frame_len(self.slots[target].session.max_frame_len());
                }
            }
        }
    }

    /// Client `c` sends a request now (delivered on the next settle);
    /// returns its id.
    pub fn request(&mut self, c: usize, body: &str) -> u64 {
        let now = self.now;
        self.clients[c]
            .session
            .request(now, Bytes::copy_from_slice(body.as_bytes()))
            .expect("request")
    }

    /// Answers every held request (in order) with its body.
    pub fn respond_held(&mut self) {
        for execution in std::mem::take(&mut self.held) {
            let _ = self.slots[execution.slot]
                .session
                .respond(execution.id, Ok(execution.body));
        }
        self.settle();
    }

    // ---- inspection ----

    /// The server slot of client `c`'s current or last session.
    pub fn slot_of(&self, c: usize) -> usize {
        let id = self.clients[c]
            .session
            .session_id()
            .expect("client has a session");
        self.by_id[&id]
    }

    pub fn server(&mut self, c: usize) -> &mut ServerSession {
        let slot = self.slot_of(c);
        &mut self.slots[slot].session
    }

    /// The payloads of every `Message` client `c` received, in order.
    pub fn messages(&self, c: usize) -> Vec<(u64, Bytes)> {
        self.clients[c]
            .events
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Message { seq, body } => Some((*seq, body.clone())),
                _ => None,
            })
            .collect()
    }

    /// Every `Response` client `c` received, in order.
    pub fn responses(&self, c: usize) -> Vec<(u64, Result<Bytes, session_core::RequestFailure>)> {
        self.clients[c]
            .events
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Response { id, result } => Some((*id, result.clone())),
                _ => None,
            })
            .collect()
    }

    /// Client `c`'s lifecycle events (messages and responses left out).
    pub fn lifecycle(&self, c: usize) -> Vec<ClientEvent> {
        self.clients[c]
            .events
            .iter()
            .filter(|e| {
                !matches!(
                    e,
                    ClientEvent::Message { .. } | ClientEvent::Response { .. }
                )
            })
            .cloned()
            .collect()
    }

    /// Every `Offline` reason client `c` reported.
    pub fn offline_reasons(&self, c: usize) -> Vec<session_core::CloseReason> {
        self.clients[c]
            .events
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Offline(reason) => Some(reason.clone()),
                _ => None,
            })
            .collect()
    }

    /// The lifecycle events (requests left out) of slot `s`.
    pub fn server_lifecycle(&self, s: usize) -> Vec<ServerEvent> {
        self.slots[s]
            .events
            .iter()
            .filter(|e| {
                !matches!(
                    e,
                    ServerEvent::Request { .. } | ServerEvent::LoginRequested(_)
                )
            })
            .cloned()
            .collect()
    }

    /// Publishes `body` to client `c`'s session.
    pub fn publish(&mut self, c: usize, body: &str) -> u64 {
        let seq = self
            .server(c)
            .publish(Bytes::copy_from_slice(body.as_bytes()))
            .expect("publish");
        self.settle();
        seq
    }

    /// Client `c` acknowledges everything it received.
    pub fn ack_all(&mut self, c: usize) {
        let last = self.clients[c].session.last_event_seq();
        self.clients[c].session.ack(last).expect("ack");
        self.settle();
    }
}

fn login_ok_token(frame: &Bytes) -> Option<Bytes> {
    use session_core::proto::prost::Message;
    use session_core::proto::v1::{ServerFrame, server_frame::Kind};
    match ServerFrame::decode(frame.clone()).ok()?.kind? {
        Kind::LoginOk(ok) => Some(ok.resume_token),
        _ => None,
    }
}
