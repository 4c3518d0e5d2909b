//! Fault injection over real sockets: 100 clients (TCP and WebSocket) reach
//! the server through a fault-injecting proxy that partitions, stalls and
//! resets their links on a seeded schedule while events flow. Every event
//! the server accepted is delivered exactly once and in order, or the
//! application is told that its session ended and why; a resume after the
//! session's window gets an explicit rejection.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::proxy::{Fault, Proxy, ScheduleShape, run_schedule, schedule};
use common::{KINDS, Recorder, TestClient, start};
use session_core::{
    ClientConfig, ClientEvent, ClientState, CloseCode, CloseReason, RejectCode, ServerConfig,
    ServerState, SessionId,
};
use session_server::{LifecycleKind, Rate, ServerHandle, ServerOptions};
use session_transport::ConnectOptions;

const CLIENTS: usize = 100;
/// Faults start within this time.
const CHAOS: Duration = Duration::from_secs(4);
/// The publisher's cadence: one event to every session per tick.
const PUBLISH_EVERY: Duration = Duration::from_millis(25);
/// The heartbeat clients ask for; the session timeout is three of them.
const HEARTBEAT: Duration = Duration::from_millis(500);
/// How long clients get, once every link is healed, to catch up or end.
const SETTLE: Duration = Duration::from_secs(20);

/// Heartbeat 500 ms, session timeout 1.5 s: short partitions (under 1 s)
/// are survived by a resume, long ones (2 s and more) outlast the window.
fn options() -> ServerOptions {
    ServerOptions {
        core: ServerConfig {
            heartbeat: HEARTBEAT,
            min_heartbeat: Duration::from_millis(100),
            timeout_heartbeats: 3,
            login_timeout: Duration::from_secs(2),
            ..ServerConfig::default()
        },
        // Every connection comes from 127.0.0.1 (the proxies).
        connection_rate: Rate {
            burst: 100_000,
            per_second: 100_000.0,
        },
        write_timeout: Duration::from_secs(2),
        ..ServerOptions::default()
    }
}

fn client_config() -> ClientConfig {
    ClientConfig {
        requested_heartbeat: Some(HEARTBEAT),
        login_timeout: Duration::from_secs(1),
        ..ClientConfig::default()
    }
}

fn connect_options() -> ConnectOptions {
    let mut options = ConnectOptions::default();
    options.connect_timeout = Duration::from_secs(1);
    options
}

const SHAPE: ScheduleShape = ScheduleShape {
    span: CHAOS,
    gap_ms: (200, 1200),
    short_partition_ms: (150, 900),
    long_partition_ms: (2000, 3500),
    long_percent: 25,
};

/// What one client saw.
#[derive(Debug, Default)]
struct Run {
    session: Option<SessionId>,
    /// Every event delivered to the application, in delivery order.
    delivered: Vec<(u64, Bytes)>,
    offline: Option<CloseReason>,
    resumes: usize,
    attempts: usize,
    /// Resumes rejected while the server still held the session.
    spurious_rejections: usize,
}

/// Drives one client: acknowledges every event, resumes after every
/// connection loss, until the session ends, or everything published
/// (`target`, known once the publisher stops) has been delivered, or
/// `stop_at`.
async fn drive(
    mut client: TestClient,
    server: ServerHandle,
    target: Arc<AtomicU64>,
    stop_at: Arc<Mutex<Instant>>,
) -> (Run, TestClient) {
    let mut run = Run {
        session: client.session.session_id(),
        ..Run::default()
    };
    loop {
        for event in std::mem::take(&mut client.events) {
            match event {
                ClientEvent::Message { seq, body } => {
                    run.delivered.push((seq, body));
                    client.session.ack(seq).expect("acks what it received");
                }
                ClientEvent::Online(info) if info.resumed => run.resumes += 1,
                ClientEvent::Offline(reason) => {
                    if matches!(reason, CloseReason::ResumeRejected { .. }) {
                        let id = run.session.expect("logged in");
                        if server
                            .state(id)
                            .is_some_and(|state| state != ServerState::Closed)
                        {
                            run.spurious_rejections += 1;
                        }
                    }
                    run.offline = Some(reason);
                }
                _ => {}
            }
        }
        let caught_up = run.delivered.len() as u64 >= target.load(Ordering::SeqCst);
        if run.offline.is_some()
            || (client.session.state() == ClientState::Online && caught_up)
            || Instant::now() >= *stop_at.lock().unwrap()
        {
            // The client (and its connection) stays with the caller.
            return (run, client);
        }
        if client.session.state() == ClientState::Suspended && client.transport.is_none() {
            // Resume, explicitly, as an application would.
            run.attempts += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
            match session_transport::connect(&client.url, &client.options).await {
                Ok(transport) => {
                    client.transport = Some(transport);
                    client.session.handle_connected(Instant::now());
                    // Refused only if the session ended meanwhile.
                    let _ = client.session.resume(Instant::now());
                }
                // Timed out in a partition: fire what timers are due, retry.
                Err(_) => client.step(Instant::now()).await,
            }
            continue;
        }
        client
            .step(Instant::now() + Duration::from_millis(100))
            .await;
    }
}

/// Publishes a numbered event to every session each tick until `stop`;
/// returns what each session accepted, as `(seq, body)`.
async fn publish(
    server: ServerHandle,
    sessions: Vec<SessionId>,
    stop: Arc<AtomicBool>,
) -> Vec<Vec<(u64, Bytes)>> {
    let mut accepted = vec![Vec::new(); sessions.len()];
    let mut ended = vec![false; sessions.len()];
    let mut tick = tokio::time::interval(PUBLISH_EVERY);
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        tick.tick().await;
        n += 1;
        for (i, &id) in sessions.iter().enumerate() {
            if ended[i] {
                continue;
            }
            let body = Bytes::from(format!("{i}:{n}"));
            match server.publish(id, body.clone()) {
                Ok(seq) => accepted[i].push((seq, body)),
                // Closed (expired, or over the buffer): nothing more is
                // accepted, and the client must be told why.
                Err(_) => ended[i] = true,
            }
        }
    }
    accepted
}

/// Whether an ended session was ended for a reason the faults explain.
fn explained(reason: &CloseReason) -> bool {
    matches!(
        reason,
        CloseReason::Expired
            | CloseReason::ResumeRejected {
                code: RejectCode::SessionNotFound,
                ..
            }
            | CloseReason::Server {
                code: CloseCode::Expired | CloseCode::SlowConsumer,
                ..
            }
    )
}

async fn chaos(seed: u64) {
    let server = start(options(), Recorder::default()).await;
    let handle = server.handle();

    // Every lifecycle change, per session, to check the Atomix order.
    let lifecycle: Arc<Mutex<HashMap<SessionId, Vec<LifecycleKind>>>> = Arc::default();
    let lagged = Arc::new(AtomicBool::new(false));
    let mut changes = handle.subscribe();
    let (log, lag) = (lifecycle.clone(), lagged.clone());
    tokio::spawn(async move {
        loop {
            match changes.recv().await {
                Ok(change) => log
                    .lock()
                    .unwrap()
                    .entry(change.session.id)
                    .or_default()
                    .push(change.kind),
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    lag.store(true, Ordering::SeqCst);
                }
                Err(_) => return,
            }
        }
    });

    let mut proxies = Vec::new();
    let mut clients = Vec::new();
    for i in 0..CLIENTS {
        let kind = KINDS[i % KINDS.len()];
        let proxy = Arc::new(Proxy::start(server.local_addr(kind).unwrap()).await);
        let mut client =
            TestClient::connect_with(&proxy.url(kind), client_config(), connect_options()).await;
        client.login(&format!("load-{i}"), "web").await;
        assert_eq!(client.session.state(), ClientState::Online, "client {i}");
        proxies.push(proxy);
        clients.push(client);
    }
    let sessions: Vec<SessionId> = clients
        .iter()
        .map(|c| c.session.session_id().unwrap())
        .collect();

    let targets: Vec<Arc<AtomicU64>> = (0..CLIENTS)
        .map(|_| Arc::new(AtomicU64::new(u64::MAX)))
        .collect();
    let stop_at = Arc::new(Mutex::new(Instant::now() + Duration::from_secs(3600)));
    let drivers: Vec<_> = clients
        .into_iter()
        .zip(&targets)
        .map(|(client, target)| {
            tokio::spawn(drive(
                client,
                handle.clone(),
                target.clone(),
                stop_at.clone(),
            ))
        })
        .collect();
    let stop_publishing = Arc::new(AtomicBool::new(false));
    let publisher = tokio::spawn(publish(
        handle.clone(),
        sessions.clone(),
        stop_publishing.clone(),
    ));

    // The faults: a schedule per link, all from the one seed.
    let schedules: Vec<Vec<(Duration, Fault)>> = (0..CLIENTS as u64)
        .map(|i| schedule(seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15), &SHAPE))
        .collect();
    let faults = schedules.iter().map(Vec::len).sum::<usize>();
    let long_partitions = schedules
        .iter()
        .flatten()
        .filter(|(_, f)| matches!(f, Fault::Partition(d) if *d >= Duration::from_secs(2)))
        .count();
    let chaos: Vec<_> = proxies
        .iter()
        .zip(schedules)
        .map(|(proxy, faults)| {
            let proxy = proxy.clone();
            tokio::spawn(async move { run_schedule(&proxy, &faults).await })
        })
        .collect();
    for task in chaos {
        task.await.unwrap();
    }
    // Every link is healed now. Stop publishing, and tell each client how
    // much to expect.
    stop_publishing.store(true, Ordering::SeqCst);
    let accepted = publisher.await.unwrap();
    for (target, accepted) in targets.iter().zip(&accepted) {
        target.store(accepted.len() as u64, Ordering::SeqCst);
    }
    *stop_at.lock().unwrap() = Instant::now() + SETTLE;
    let mut runs = Vec::new();
    let mut clients = Vec::new();
    for driver in drivers {
        let (run, client) = driver.await.unwrap();
        runs.push(run);
        clients.push(client);
    }

    // Every accepted event was delivered exactly once and in order, or the
    // application was told that its session ended, and why.
    let mut complete = 0;
    let mut ended: HashMap<String, usize> = HashMap::new();
    for (i, (run, accepted)) in runs.iter().zip(&accepted).enumerate() {
        let context = format!("seed {seed:#x}, client {i} ({})", KINDS[i % KINDS.len()]);
        assert!(
            accepted
                .iter()
                .enumerate()
                .all(|(j, (seq, _))| *seq == j as u64 + 1),
            "{context}: the server numbers events 1, 2, 3..."
        );
        assert!(
            run.delivered.len() <= accepted.len()
                && run.delivered[..] == accepted[..run.delivered.len()],
            "{context}: delivered events are not exactly the accepted ones, in order \
             (delivered {}, accepted {}; first difference at {:?})",
            run.delivered.len(),
            accepted.len(),
            run.delivered.iter().zip(accepted).position(|(d, a)| d != a),
        );
        match &run.offline {
            None => {
                assert_eq!(
                    run.delivered.len(),
                    accepted.len(),
                    "{context}: events were accepted and neither delivered nor was the \
                     session ended (resumes {}, attempts {})",
                    run.resumes,
                    run.attempts
                );
                complete += 1;
            }
            Some(reason) => {
                assert!(
                    explained(reason),
                    "{context}: the session ended for an unexpected reason: {reason:?}"
                );
                let how = match reason {
                    CloseReason::Server { code, .. } => format!("close signal {code:?}"),
                    CloseReason::ResumeRejected { code, .. } => format!("resume rejected {code:?}"),
                    CloseReason::Expired => "expired (client's count)".to_owned(),
                    other => format!("{other:?}"),
                };
                *ended.entry(how).or_default() += 1;
            }
        }
    }

    // Both sides agree: a session the client still holds is open on the
    // server; one the client was told is over does not outlive its window
    // on the server (the client's count never ends a session the server
    // keeps).
    for (i, (run, &id)) in runs.iter().zip(&sessions).enumerate() {
        if run.offline.is_none() {
            assert_eq!(handle.state(id), Some(ServerState::Open), "client {i}");
            continue;
        }
        let deadline = Instant::now() + common::SOON;
        while handle.state(id).is_some() {
            assert!(
                Instant::now() < deadline,
                "seed {seed:#x}, client {i}: told its session ended, but the server keeps it"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    // The backend saw each session's life in the Atomix order.
    if !lagged.load(Ordering::SeqCst) {
        for (id, kinds) in lifecycle.lock().unwrap().iter() {
            assert_eq!(
                kinds.first(),
                Some(&LifecycleKind::Opened),
                "{id}: {kinds:?}"
            );
            if let Some(closed) = kinds
                .iter()
                .position(|k| matches!(k, LifecycleKind::Closed { .. }))
            {
                assert_eq!(closed, kinds.len() - 1, "{id}: nothing after on_close");
            }
            for (at, kind) in kinds.iter().enumerate() {
                if *kind == LifecycleKind::Expired {
                    assert!(
                        matches!(
                            kinds.get(at + 1),
                            Some(LifecycleKind::Closed {
                                code: CloseCode::Expired,
                                ..
                            })
                        ),
                        "{id}: on_expire is followed by on_close: {kinds:?}"
                    );
                }
            }
        }
    }

    let resumes: usize = runs.iter().map(|r| r.resumes).sum();
    let spurious: usize = runs.iter().map(|r| r.spurious_rejections).sum();
    eprintln!(
        "seed {seed:#x}: {faults} faults ({long_partitions} partitions of 2 s or more); \
         {resumes} resumes; {complete} sessions got every event; ended: {ended:?}; \
         {spurious} resumes rejected while the server still held the session"
    );
    // The faults did bite: sessions lost connections and came back.
    assert!(resumes > 0, "seed {seed:#x}: no client ever resumed");
    assert!(complete > 0, "seed {seed:#x}: no session survived");
    drop(clients);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_stalls_and_resets_lose_no_accepted_event_seed_1() {
    chaos(0x5EED_0001).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_stalls_and_resets_lose_no_accepted_event_seed_2() {
    chaos(0x5EED_0002).await;
}

/// A client whose device slept through a partition longer than the session
/// window: the server expired the session, and the resume gets an explicit
/// `SESSION_NOT_FOUND`. The event published during the partition was never
/// delivered, and the client is told its session is over.
#[tokio::test]
async fn a_resume_after_the_session_window_gets_an_explicit_rejection() {
    for kind in KINDS {
        let server = start(options(), Recorder::default()).await;
        let handle = server.handle();
        let mut changes = handle.subscribe();
        let proxy = Proxy::start(server.local_addr(kind).unwrap()).await;
        let config = ClientConfig {
            requested_heartbeat: Some(Duration::from_millis(100)),
            ..client_config()
        };
        let mut client =
            TestClient::connect_with(&proxy.url(kind), config, connect_options()).await;
        client.login("alice", "web").await;
        let id = client.session.session_id().unwrap();
        for i in 1..=3 {
            handle.publish(id, format!("e{i}").into()).unwrap();
        }
        client
            .until(|e| matches!(e, ClientEvent::Message { seq: 3, .. }))
            .await;
        client.ack_all().await;

        // The device sleeps (no timers), and the network is partitioned.
        client.timers = false;
        proxy.partition();
        handle.publish(id, "e4".into()).unwrap();
        // The session timeout is 300 ms: the server expires it.
        let deadline = Instant::now() + common::SOON;
        loop {
            let change = tokio::time::timeout_at(deadline.into(), changes.recv())
                .await
                .expect("the session expires")
                .unwrap();
            if change.session.id == id
                && matches!(
                    change.kind,
                    LifecycleKind::Closed {
                        code: CloseCode::Expired,
                        ..
                    }
                )
            {
                break;
            }
        }
        assert_eq!(handle.state(id), None);
        // The old connection dies in the partition; the device wakes up
        // after the partition healed, finds the connection gone and
        // resumes.
        proxy.reset();
        proxy.heal();
        client.drop_connection();
        assert_eq!(client.session.state(), ClientState::Suspended);
        client.resume().await;
        match client.offline().await {
            CloseReason::ResumeRejected {
                code: RejectCode::SessionNotFound,
                ..
            } => {}
            other => panic!("{kind}: expected an explicit SESSION_NOT_FOUND, got {other:?}"),
        }
        assert_eq!(client.messages(), ["e1", "e2", "e3"], "{kind}");
        server.shutdown().await;
    }
}

/// A resume whose answer is lost: the server accepted it (and rotated the
/// resume token), but the connection was reset before the client read the
/// `LoginOk`. The client still holds only the old token, and its next resume
/// with it must work: the server keeps accepting the token the client last
/// presented until a frame from the client shows it got the new one.
#[tokio::test]
async fn a_resume_whose_answer_is_lost() {
    use common::raw::RawPeer;
    for kind in KINDS {
        let server = start(options(), Recorder::default()).await;
        let handle = server.handle();
        let addr = server.local_addr(kind).unwrap();
        let wait_state = |id, state| {
            let handle = handle.clone();
            async move {
                let deadline = Instant::now() + common::SOON;
                while handle.state(id) != state {
                    assert!(Instant::now() < deadline, "never reached {state:?}");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        };
        let mut first = RawPeer::connect(addr, kind).await;
        let grant = first.login("alice", "web").await;
        let id = grant.session_id;
        first.reset();
        wait_state(id, Some(ServerState::Detached)).await;

        // The resume reaches the server; its answer is lost in a reset.
        let mut second = RawPeer::connect(addr, kind).await;
        let claim = second.wire(&common::raw::resume_frame(id, &grant.token, 0));
        assert!(second.send_bytes(&claim).await);
        wait_state(id, Some(ServerState::Open)).await;
        second.reset();
        wait_state(id, Some(ServerState::Detached)).await;

        // The client tries again with the token it has.
        let mut third = RawPeer::connect(addr, kind).await;
        let again = third.resume(id, &grant.token, 0).await;
        assert!(again.is_ok(), "{kind}: {:?}", again.err());
        assert_eq!(handle.state(id), Some(ServerState::Open), "{kind}");
        drop(third);
        server.shutdown().await;
    }
}
