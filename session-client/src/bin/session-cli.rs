//! `session-cli`: connect to a session server, log in, print lifecycle
//! changes and pushed events as they happen, and send each line of stdin
//! as a request.
//!
//! ```text
//! session-cli tcp://127.0.0.1:7700 alice alice-secret
//! session-cli ws://127.0.0.1:7701/session bob bob-secret
//! session-cli --resume tcp://127.0.0.1:7700 alice alice-secret
//! ```
//!
//! With `sessiond`'s demo application, `to bob hello` delivers `alice: hello`
//! to every session of bob; any other line is echoed back.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use clap::Parser;
use futures_util::StreamExt;
use session_client::{
    Client, ClientListener, ClientOptions, ClientState, CloseReason, Credentials, DisconnectReason,
    Lifecycle, OnlineInfo, RetryPolicy,
};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::task::JoinSet;

/// Connect to a session server, log in, and talk to it.
///
/// Each line of stdin is sent as a request and its response printed.
/// Lines starting with `/` are commands: `/drop` drops the connection (the
/// session is suspended), `/resume` resumes it, `/logout` logs out and
/// quits, `/help` lists them. End of input, and Ctrl-C, log out.
#[derive(Debug, Parser)]
#[command(name = "session-cli", version)]
struct Args {
    /// Where: tcp://host:port, tls://host:port, ws://host:port/path or
    /// wss://host:port/path (sessiond listens on tcp://127.0.0.1:7700 and
    /// ws://127.0.0.1:7701/session).
    url: String,
    /// The user to log in as (sessiond's demo users: alice, bob, carol).
    user: String,
    /// The user's password (alice-secret, bob-secret, carol-secret).
    password: String,
    /// The kind of device; a second login on the same device replaces the
    /// first.
    #[arg(long, default_value = "cli")]
    device: String,
    /// The heartbeat interval to ask for, in seconds (the server decides).
    #[arg(long, value_name = "SECS")]
    heartbeat: Option<f64>,
    /// How long a request waits for its response, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    request_timeout: f64,
    /// Root certificates (PEM) to trust for tls:// and wss://.
    #[arg(long, value_name = "FILE")]
    tls_roots: Option<PathBuf>,
    /// Show a resume: drop the connection `--drop-after` seconds after
    /// login, then resume (with backoff) after every connection loss.
    /// Events published meanwhile are replayed on resume.
    #[arg(long)]
    resume: bool,
    /// With `--resume`: seconds between the login and the dropped
    /// connection.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    drop_after: f64,
}

/// Exit code once standard output is gone: 128 + SIGPIPE, what a shell
/// reports for a program that a closed pipe ended.
const EXIT_OUTPUT_GONE: i32 = 141;

/// `println!`, except that once standard output is gone (its reader
/// closed the pipe, as `| head` does), the tool exits quietly with
/// [`EXIT_OUTPUT_GONE`] instead of panicking: nobody is left to read what
/// it would say. (Rust ignores SIGPIPE, so the write fails instead.)
macro_rules! say {
    ($($arg:tt)*) => {{
        let mut out = std::io::stdout().lock();
        if writeln!(out, $($arg)*).and_then(|()| out.flush()).is_err() {
            std::process::exit(EXIT_OUTPUT_GONE);
        }
    }};
}

/// Prints every lifecycle change as it happens.
struct Printer;

impl ClientListener for Printer {
    fn on_connected(&self) {
        say!("[connected]");
    }

    fn on_disconnected(&self, reason: DisconnectReason) {
        let reason = match reason {
            DisconnectReason::Lost => "connection lost",
            DisconnectReason::Closed => "closed",
            DisconnectReason::ServerSilent => "server silent",
            _ => "unknown reason",
        };
        say!("[disconnected] {reason}");
    }

    fn on_online(&self, info: &OnlineInfo) {
        let how = if info.resumed {
            "resumed session"
        } else {
            "session"
        };
        say!(
            "[online] {how} {} heartbeat {:?} timeout {:?}",
            info.session_id,
            info.heartbeat,
            info.session_timeout
        );
    }

    fn on_offline(&self, reason: &CloseReason) {
        say!("[offline] {reason}");
    }
}

fn seconds(value: f64, what: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value).map_err(|_| format!("invalid {what}: {value}"))
}

fn options(args: &Args) -> Result<ClientOptions, String> {
    let mut options = ClientOptions::default().with_listener(Printer);
    options.heartbeat = args
        .heartbeat
        .map(|secs| seconds(secs, "--heartbeat"))
        .transpose()?;
    options.request_timeout = seconds(args.request_timeout, "--request-timeout")?;
    if let Some(roots) = &args.tls_roots {
        options = options
            .with_tls_roots(roots)
            .map_err(|e| format!("--tls-roots: {e}"))?;
    }
    Ok(options)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    let code = match run(args).await {
        Ok(code) => code,
        Err(message) => {
            eprintln!("session-cli: {message}");
            1
        }
    };
    // Exit here rather than return: tokio reads stdin on a blocking thread
    // that cannot be cancelled, so the runtime's shutdown would wait for
    // another line of input, or for its end, before the process could go.
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}

/// The exit codes: 0 after a logout, 2 when the server ended the session,
/// 1 on errors.
async fn run(args: Args) -> Result<i32, String> {
    let options = options(&args)?;
    let drop_after = seconds(args.drop_after, "--drop-after")?;
    let client = Client::connect(&args.url, options)
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", args.url))?;
    let mut lifecycle = client.lifecycle();
    let credentials = Credentials {
        user_id: args.user.clone(),
        credential: args.password.clone().into(),
        device: args.device.clone(),
        ..Default::default()
    };
    client
        .login(credentials)
        .await
        .map_err(|e| format!("cannot log in as {}: {e}", args.user))?;

    if let Some(mut events) = client.take_events() {
        tokio::spawn(async move {
            while let Some(event) = events.next().await {
                say!(
                    "[event {}] {}",
                    event.seq,
                    String::from_utf8_lossy(&event.body)
                );
            }
        });
    }
    if args.resume {
        let client = client.clone();
        tokio::spawn(async move {
            tokio::time::sleep(drop_after).await;
            say!("[demo] dropping the connection; events sent meanwhile are replayed on resume");
            client.drop_connection().await;
        });
    }
    say!("Type a line to send it as a request; /help for commands.");

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    // Requests in flight; at the end of input the tool logs out once they
    // have their replies.
    let mut requests = JoinSet::new();
    let mut draining = false;
    let numbers = AtomicU64::new(0);
    let resuming = Arc::new(AtomicBool::new(false));
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let mut interruptible = true;
    loop {
        if draining && requests.is_empty() {
            draining = false;
            logout(&client).await;
        }
        tokio::select! {
            change = lifecycle.next() => match change {
                Some(Lifecycle::Offline(reason)) => {
                    return Ok(if reason == CloseReason::LoggedOut { 0 } else { 2 });
                }
                Some(Lifecycle::Disconnected(_))
                    if args.resume && client.state() == ClientState::Suspended =>
                {
                    resume(&client, &resuming, Duration::from_secs(1));
                }
                Some(_) => {}
                None => return Ok(1),
            },
            Some(_) = requests.join_next(), if !requests.is_empty() => {}
            _ = &mut interrupted, if interruptible => {
                // Ctrl-C logs out, so the server does not keep the session.
                interruptible = false;
                logout(&client).await;
            }
            line = lines.next_line(), if stdin_open => match line {
                Ok(Some(line)) => {
                    command(&client, line.trim(), &numbers, &resuming, &mut requests).await;
                }
                Ok(None) | Err(_) => {
                    stdin_open = false;
                    draining = true;
                }
            },
        }
    }
}

/// Runs one line of input; a request's task joins `requests`.
async fn command(
    client: &Client,
    line: &str,
    numbers: &AtomicU64,
    resuming: &Arc<AtomicBool>,
    requests: &mut JoinSet<()>,
) {
    match line {
        "" => {}
        "/help" => say!(
            "/drop    drop the connection (the session is suspended)\n\
             /resume  resume the suspended session\n\
             /logout  log out and quit (also /quit, or end of input)\n\
             anything else is sent as a request"
        ),
        "/drop" => client.drop_connection().await,
        "/resume" => resume(client, resuming, Duration::ZERO),
        "/logout" | "/quit" => logout(client).await,
        line if line.starts_with('/') => say!("[error] unknown command {line}; try /help"),
        line => {
            let number = numbers.fetch_add(1, Ordering::Relaxed) + 1;
            let client = client.clone();
            let body = line.to_owned();
            requests.spawn(async move {
                match client.request(body).await {
                    Ok(response) => {
                        say!("[reply {number}] {}", String::from_utf8_lossy(&response));
                    }
                    Err(error) => say!("[reply {number}] error: {error}"),
                }
            });
        }
    }
}

/// Resumes with backoff after `after`, in the background, unless a resume
/// is already under way.
fn resume(client: &Client, resuming: &Arc<AtomicBool>, after: Duration) {
    if resuming.swap(true, Ordering::SeqCst) {
        return;
    }
    let (client, resuming) = (client.clone(), resuming.clone());
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        say!("[resuming]");
        let policy = RetryPolicy {
            initial: Duration::from_secs(1),
            ..RetryPolicy::default()
        };
        if let Err(error) = client.resume_with_backoff(&policy).await {
            say!("[error] resume failed: {error}");
        }
        resuming.store(false, Ordering::SeqCst);
    });
}

async fn logout(client: &Client) {
    if let Err(error) = client.logout().await {
        say!("[error] logout: {error}");
    }
}
