//! Events published from several threads at once, while the client's
//! socket is full, arrive whole, once each and in order: what the socket
//! does not take waits in the connection's backlog, and the session's
//! later events wait in its core until the backlog is out.

mod common;

use common::{KINDS, Recorder, TestClient, start, url};
use session_core::ClientEvent;
use session_server::ServerOptions;

const THREADS: usize = 3;
const EACH: usize = 150;
/// 450 events of 32 KiB: about 14 MiB, more than loopback's socket
/// buffers hold while the client reads nothing.
const BODY: usize = 32 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_from_many_threads_arrive_in_order_through_a_full_socket() {
    for kind in KINDS {
        let mut options = ServerOptions::default();
        options.core.max_unacked_events = 100_000;
        options.core.max_unacked_bytes = 256 << 20;
        let server = start(options, Recorder::default()).await;
        let mut client = TestClient::online(&url(&server, kind), "alice", "web").await;
        let handle = server.handle();
        let id = handle.user_sessions("alice")[0].id;

        // The client reads nothing while the threads publish.
        let publishers: Vec<_> = (0..THREADS)
            .map(|thread| {
                let handle = handle.clone();
                std::thread::spawn(move || {
                    for i in 0..EACH {
                        let mut body = format!("{thread} {i} ").into_bytes();
                        body.resize(BODY, b'x');
                        handle.publish(id, body.into()).expect("publish");
                    }
                })
            })
            .collect();
        for publisher in publishers {
            publisher.join().expect("a publisher panicked");
        }

        let total = (THREADS * EACH) as u64;
        client
            .until(|e| matches!(e, ClientEvent::Message { seq, .. } if *seq == total))
            .await;
        let seqs: Vec<u64> = client
            .events
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Message { seq, .. } => Some(*seq),
                _ => None,
            })
            .collect();
        assert_eq!(
            seqs,
            (1..=total).collect::<Vec<_>>(),
            "{kind}: every event once, in order"
        );
        // Each thread's events in the order it published them, whole.
        let mut next = [0usize; THREADS];
        for body in client.messages() {
            assert_eq!(body.len(), BODY, "{kind}: a whole body");
            let mut words = body.split(' ');
            let thread: usize = words.next().unwrap().parse().unwrap();
            let i: usize = words.next().unwrap().parse().unwrap();
            assert_eq!(i, next[thread], "{kind}: thread {thread}'s order");
            next[thread] += 1;
        }
        assert_eq!(next, [EACH; THREADS], "{kind}");
        common::close_and_shut_down(server, client).await;
    }
}
