//! A worker process: runs the sessions the coordinator asks for, all bound
//! to one source address, and answers its commands over stdin and stdout
//! (see [`crate::control`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{Semaphore, mpsc, watch};

use crate::client::{self, Batch, Plan, Role, Spec, Tally, Target, lock};
use crate::control::{Carrier, Command, Counters, Protocol, Reply, Request, Response, unix_ns};
use crate::stats::Counts;

/// How often progress lines go out.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);
/// How often a waiting command looks at its counters.
const POLL: Duration = Duration::from_millis(5);

/// Where the worker connects and from where.
#[derive(Debug, Clone)]
pub struct WorkerArgs {
    /// Its number (for user names of publishers).
    pub index: usize,
    /// The address every socket binds to.
    pub source: IpAddr,
    /// The server's TCP listener.
    pub tcp: SocketAddr,
    /// The server's WebSocket listener.
    pub ws: SocketAddr,
    /// The WebSocket path.
    pub ws_path: String,
    /// The worker exits by itself after this long, whatever happens.
    pub max_seconds: u64,
    /// What its sessions speak.
    pub protocol: Protocol,
}

struct Worker {
    index: usize,
    target: Arc<Target>,
    tally: Arc<Tally>,
    stop: watch::Sender<bool>,
    out: mpsc::UnboundedSender<Response>,
}

/// Runs the worker until stdin closes or its time is up.
pub async fn run(args: WorkerArgs) -> Result<(), String> {
    let (out, mut out_rx) = mpsc::unbounded_channel::<Response>();
    let writer = tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(response) = out_rx.recv().await {
            let Ok(mut line) = serde_json::to_string(&response) else {
                continue;
            };
            line.push('\n');
            if stdout.write_all(line.as_bytes()).await.is_err() || stdout.flush().await.is_err() {
                break;
            }
        }
    });
    let (stop, _) = watch::channel(false);
    let mut target = Target::new(args.tcp, args.ws, args.ws_path.clone(), args.source);
    target.protocol = args.protocol;
    let worker = Arc::new(Worker {
        index: args.index,
        target: Arc::new(target),
        tally: Arc::new(Tally::default()),
        stop,
        out,
    });

    let progress = {
        let worker = worker.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PROGRESS_EVERY);
            loop {
                tick.tick().await;
                let reply = Reply::Progress(worker.counters());
                if worker.out.send(Response { id: None, reply }).is_err() {
                    break;
                }
            }
        })
    };

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let deadline = tokio::time::sleep(Duration::from_secs(args.max_seconds));
    tokio::pin!(deadline);
    let result = loop {
        tokio::select! {
            line = lines.next_line() => match line {
                Ok(Some(line)) => {
                    let request: Request = match serde_json::from_str(&line) {
                        Ok(request) => request,
                        Err(e) => break Err(format!("bad command {line:?}: {e}")),
                    };
                    if request.command == Command::Exit {
                        exit_now(request.id);
                    }
                    let worker = worker.clone();
                    tokio::spawn(async move {
                        let id = request.id;
                        let reply = worker.handle(request.command).await;
                        let _ = worker.out.send(Response { id: Some(id), reply });
                    });
                }
                // The coordinator is gone (or done): stop.
                Ok(None) => break Ok(()),
                Err(e) => break Err(format!("stdin: {e}")),
            },
            () = &mut deadline => break Err(format!("worker {}: time limit of {} s reached", args.index, args.max_seconds)),
        }
    };
    let _ = worker.stop.send(true);
    progress.abort();
    drop(worker);
    // Let the last replies out, briefly.
    let _ = tokio::time::timeout(Duration::from_millis(500), writer).await;
    result
}

/// Writes the answer to `Exit` straight to stdout (one short line, so it
/// cannot interleave with a progress line in the pipe) and exits.
fn exit_now(id: u64) -> ! {
    use std::io::Write as _;
    let response = Response {
        id: Some(id),
        reply: Reply::Closed { end_ns: unix_ns() },
    };
    if let Ok(mut line) = serde_json::to_string(&response) {
        line.push('\n');
        let mut stdout = std::io::stdout();
        let _ = stdout.write_all(line.as_bytes());
        let _ = stdout.flush();
    }
    std::process::exit(0)
}

impl Worker {
    fn counters(&self) -> Counters {
        Counters {
            online: self.tally.online.load(Ordering::Relaxed),
            failed: self.tally.failed.load(Ordering::Relaxed),
            received: self.tally.received.load(Ordering::Relaxed),
        }
    }

    async fn handle(self: &Arc<Self>, command: Command) -> Reply {
        match command {
            Command::Connect {
                carrier,
                first,
                count,
                in_flight,
                heartbeat_ms,
                timeout_ms,
            } => {
                self.connect(carrier, first, count, in_flight, heartbeat_ms, timeout_ms)
                    .await
            }
            Command::Expect { total, timeout_ms } => self.expect(total, timeout_ms).await,
            Command::Publish {
                sessions,
                total,
                targets,
                body_len,
                rate,
                window,
                timeout_ms,
            } => {
                let plan = Arc::new(Plan::new(total, targets, body_len, rate, window));
                self.publish(sessions, plan, timeout_ms).await
            }
            Command::Stats => Reply::Stats(self.counters()),
            // Handled as it arrives (see `run`).
            Command::Exit => Reply::Error {
                message: "exit is not a task".into(),
            },
        }
    }

    /// Starts `count` sessions, `in_flight` at a time, and waits until each
    /// is online or failed.
    async fn connect(
        self: &Arc<Self>,
        carrier: Carrier,
        first: u64,
        count: u64,
        in_flight: usize,
        heartbeat_ms: Option<u32>,
        timeout_ms: u64,
    ) -> Reply {
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        let batch = Arc::new(Batch::default());
        let slots = Arc::new(Semaphore::new(in_flight.max(1)));
        let start_ns = unix_ns();
        for user in first..first + count {
            let permit = tokio::select! {
                permit = slots.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
                () = tokio::time::sleep_until(deadline.into()) => break,
            };
            let spec = Spec {
                user: format!("load-{user}"),
                carrier,
                heartbeat_ms,
                role: Role::Receiver,
            };
            tokio::spawn(client::run(
                spec,
                self.target.clone(),
                self.tally.clone(),
                batch.clone(),
                Some(permit),
                self.stop.subscribe(),
            ));
        }
        while batch.settled.load(Ordering::Relaxed) < count && Instant::now() < deadline {
            tokio::time::sleep(POLL).await;
        }
        let online = batch.online.load(Ordering::Relaxed);
        let mut errors: Vec<(String, u64)> = lock(&batch.errors)
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        let settled = batch.settled.load(Ordering::Relaxed);
        if settled < count {
            errors.push(("not settled before the timeout".into(), count - settled));
        }
        Reply::Connected {
            online,
            failed: count - online,
            start_ns,
            end_ns: batch.last_ns.load(Ordering::Relaxed).max(start_ns),
            latency: Counts::of(&lock(&batch.latency)),
            errors,
        }
    }

    async fn expect(&self, total: u64, timeout_ms: u64) -> Reply {
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        while self.tally.received.load(Ordering::Relaxed) < total && Instant::now() < deadline {
            tokio::time::sleep(POLL).await;
        }
        Reply::Received {
            received: self.tally.received.load(Ordering::Relaxed),
            first_ns: self.tally.first_event_ns.load(Ordering::Relaxed),
            last_ns: self.tally.last_event_ns.load(Ordering::Relaxed),
            latency: Counts::of(&lock(&self.tally.event_latency)),
            taken_latency: Counts::of(&lock(&self.tally.taken_latency)),
        }
    }

    async fn publish(self: &Arc<Self>, sessions: usize, plan: Arc<Plan>, timeout_ms: u64) -> Reply {
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        let batch = Arc::new(Batch::default());
        for j in 0..sessions {
            let spec = Spec {
                user: format!("load-pub-{}-{j}", self.index),
                carrier: Carrier::Tcp,
                heartbeat_ms: None,
                role: Role::Publisher(plan.clone()),
            };
            tokio::spawn(client::run(
                spec,
                self.target.clone(),
                self.tally.clone(),
                batch.clone(),
                None,
                self.stop.subscribe(),
            ));
        }
        while batch.settled.load(Ordering::Relaxed) < sessions as u64 && Instant::now() < deadline {
            tokio::time::sleep(POLL).await;
        }
        let online = batch.online.load(Ordering::Relaxed);
        if online == 0 {
            let errors: Vec<String> = lock(&batch.errors)
                .iter()
                .map(|(k, v)| format!("{v} x {k}"))
                .collect();
            return Reply::Error {
                message: format!("no publisher got online: {}", errors.join("; ")),
            };
        }
        plan.start();
        while plan.finished() < plan.total && Instant::now() < deadline {
            tokio::time::sleep(POLL).await;
        }
        let mut errors: Vec<(String, u64)> = lock(&plan.errors)
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        if online < sessions as u64 {
            errors.push((
                "publishers that did not get online".into(),
                sessions as u64 - online,
            ));
        }
        let unanswered = plan.total - plan.finished().min(plan.total);
        if unanswered > 0 {
            errors.push(("unanswered before the timeout".into(), unanswered));
        }
        Reply::Published {
            sent: plan.sent(),
            delivered_ok: plan.delivered_ok.load(Ordering::Relaxed),
            failed: plan.failed.load(Ordering::Relaxed) + unanswered,
            start_ns: plan.first_send_ns.load(Ordering::Relaxed),
            end_ns: plan.last_response_ns.load(Ordering::Relaxed),
            errors,
        }
    }
}
