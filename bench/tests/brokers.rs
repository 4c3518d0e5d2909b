//! The load generator against real brokers, small: mosquitto at QoS 0 and
//! QoS 1, and nats-server, through S3 and S3lat (log in, subscribe,
//! publish paced and unpaced, receive, read the stamps). Every message
//! must arrive, and none may fail.
//!
//! The brokers are Debian's packages (`apt-get install mosquitto
//! nats-server`); `.ci/run` installs them and sets
//! `SESSION_BENCH_BROKERS=required`, which makes a missing broker a
//! failure. Without that variable a machine without the brokers skips
//! this test and says so.

use std::path::{Path, PathBuf};

use session_bench::scenario::{Bench, Broker, RunResult, Scenario, Sizes};

fn find(name: &str) -> Option<PathBuf> {
    ["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|path| path.is_file())
}

fn small() -> Sizes {
    let mut sizes = Sizes::quick();
    sizes.s3_receivers = 300;
    sizes.s3_messages = 3_000;
    sizes.s3lat_rate = 3_000.0;
    sizes.s3_publishers = 2;
    sizes.in_flight = 50;
    sizes
}

fn check(what: &str, result: Result<RunResult, String>, messages: u64) {
    let result = result.unwrap_or_else(|e| panic!("{what}: {e}"));
    let figure = |key: &str| {
        *result
            .figures
            .get(key)
            .unwrap_or_else(|| panic!("{what}: no {key} in {:?}", result.figures))
    };
    assert_eq!(figure("lost"), 0.0, "{what}: {:?}", result.figures);
    assert_eq!(
        figure("publish_failed"),
        0.0,
        "{what}: {:?}",
        result.figures
    );
    assert!(figure("delivered_per_s") > 0.0, "{what}");
    assert!(figure("latency_p50_ms") > 0.0, "{what}");
    assert_eq!(
        result.details["received"].as_u64(),
        Some(messages),
        "{what}: {}",
        result.details
    );
    if result.scenario == Scenario::S3lat {
        // Each message was taken to be sent at or after it was due, so
        // its latency from the send is no longer than from when it was due.
        for q in ["p50", "p99"] {
            let from_due = figure(&format!("latency_{q}_ms"));
            let from_send = figure(&format!("sent_latency_{q}_ms"));
            assert!(
                from_send > 0.0 && from_send <= from_due,
                "{what}: {q} from the send {from_send}, from when due {from_due}"
            );
        }
    }
}

#[test]
fn the_brokers_take_every_message_of_s3_and_s3lat() {
    let required = std::env::var("SESSION_BENCH_BROKERS").is_ok_and(|v| v == "required");
    let (Some(mosquitto), Some(nats)) = (find("mosquitto"), find("nats-server")) else {
        assert!(
            !required,
            "mosquitto or nats-server is missing: apt-get install mosquitto nats-server"
        );
        eprintln!("skipped: mosquitto or nats-server is not installed");
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("brokers");
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_session-bench"));
    // No sessiond: every run below is a broker's.
    let mut bench = Bench::new(out.join("no-sessiond"), exe, small(), out);
    let messages = bench.sizes.s3_messages;
    let brokers = [
        (
            "mosquitto, QoS 0",
            Broker::Mosquitto {
                binary: mosquitto.clone(),
                qos: 0,
            },
        ),
        (
            "mosquitto, QoS 1",
            Broker::Mosquitto {
                binary: mosquitto,
                qos: 1,
            },
        ),
        ("nats-server", Broker::Nats { binary: nats }),
    ];
    runtime.block_on(async {
        for (name, broker) in brokers {
            bench.broker = Some(broker);
            for scenario in [Scenario::S3, Scenario::S3lat] {
                let what = format!("{name}, {}", scenario.name());
                check(&what, bench.run(scenario).await, messages);
            }
        }
        bench.broker = None;
        // sessiond's scenarios that do not apply to a broker say so.
        bench.broker = Some(Broker::Nats {
            binary: PathBuf::from("/nonexistent/nats-server"),
        });
        let refused = bench.run(Scenario::S2ws).await.unwrap_err();
        assert!(refused.contains("sessiond only"), "{refused}");
        let missing = bench.run(Scenario::S3).await.unwrap_err();
        assert!(missing.contains("no /nonexistent/nats-server"), "{missing}");
    });
}
