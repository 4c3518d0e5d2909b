//! What `/proc` says about a process (resident memory, CPU time, open file
//! descriptors) and about the TCP stack (listen queue drops).

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

/// One look at a process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sample {
    /// Resident set size (`VmRSS`), bytes.
    pub rss_bytes: u64,
    /// CPU time of the process's live threads, from
    /// `/proc/PID/task/*/schedstat` (nanosecond resolution).
    pub cpu_ns: u64,
    /// User plus system CPU time from `/proc/PID/stat`, in clock ticks.
    pub cpu_ticks: u64,
    /// Open file descriptors.
    pub fds: u64,
}

impl Sample {
    /// Reads everything for `pid`.
    pub fn of(pid: u32) -> io::Result<Self> {
        Ok(Self {
            rss_bytes: rss_bytes(pid)?,
            cpu_ns: cpu_ns(pid)?,
            cpu_ticks: cpu_ticks(pid)?,
            fds: fd_count(pid)?,
        })
    }
}

/// `VmRSS` of `pid`, in bytes.
pub fn rss_bytes(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_status_kb(&status, "VmRSS:")
        .map(|kb| kb * 1024)
        .ok_or_else(|| io::Error::other("no VmRSS in /proc/PID/status"))
}

/// The value in kB of one `/proc/PID/status` field.
pub fn parse_status_kb(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].split_whitespace().next()?.parse().ok()
}

/// `utime + stime` of `pid`, in clock ticks.
pub fn cpu_ticks(pid: u32) -> io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat_ticks(&stat).ok_or_else(|| io::Error::other("malformed /proc/PID/stat"))
}

/// `utime + stime` from the text of `/proc/PID/stat`. The command name may
/// hold spaces and parentheses, so fields are counted after the last `)`.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After the name: state is field 3; utime and stime are fields 14 and 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Nanoseconds on CPU, summed over the live threads of `pid`.
pub fn cpu_ns(pid: u32) -> io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let path = entry?.path().join("schedstat");
        // A thread may exit between the listing and the read.
        if let Ok(text) = std::fs::read_to_string(&path) {
            total += text
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Ok(total)
}

/// CPU time of the calling thread, in nanoseconds
/// (`/proc/thread-self/schedstat`).
pub fn thread_cpu_ns() -> io::Result<u64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat")?;
    text.split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| io::Error::other("unreadable schedstat"))
}

/// Whether `pid` has exited (gone, or a zombie: its files are closed).
pub fn exited(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|at| stat[at + 1..].split_whitespace().next())
            .is_none_or(|state| state == "Z" || state == "X"),
        Err(_) => true,
    }
}

/// Open file descriptors of `pid`. Linux 6.2 and later report the count as
/// the size of `/proc/PID/fd`, which is far cheaper than listing it.
pub fn fd_count(pid: u32) -> io::Result<u64> {
    let dir = format!("/proc/{pid}/fd");
    let size = std::fs::metadata(&dir)?.len();
    if size > 0 {
        return Ok(size);
    }
    Ok(std::fs::read_dir(Path::new(&dir))?.count() as u64)
}

/// The `TcpExt` counters of `/proc/net/netstat` (ListenDrops, ListenOverflows, ...).
pub fn tcp_ext() -> io::Result<BTreeMap<String, u64>> {
    let text = std::fs::read_to_string("/proc/net/netstat")?;
    Ok(parse_netstat(&text, "TcpExt:"))
}

/// One section of `/proc/net/netstat`: a header line of names, then a line
/// of values, both starting with `section`.
pub fn parse_netstat(text: &str, section: &str) -> BTreeMap<String, u64> {
    let mut lines = text.lines().filter(|l| l.starts_with(section));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return BTreeMap::new();
    };
    names
        .split_whitespace()
        .skip(1)
        .zip(values.split_whitespace().skip(1))
        .filter_map(|(n, v)| Some((n.to_owned(), v.parse().ok()?)))
        .collect()
}

/// Busy CPU time of the whole machine (all CPUs), in clock ticks: user,
/// nice, system, irq, softirq and steal from the first line of `/proc/stat`.
pub fn machine_busy_ticks() -> io::Result<u64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    parse_machine_busy(&stat).ok_or_else(|| io::Error::other("malformed /proc/stat"))
}

/// See [`machine_busy_ticks`].
pub fn parse_machine_busy(stat: &str) -> Option<u64> {
    let v: Vec<u64> = cpu_line(stat)?
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal
    Some(v.first()? + v.get(1)? + v.get(2)? + v.get(5)? + v.get(6)? + v.get(7).unwrap_or(&0))
}

/// Time the hypervisor gave the machine's virtual CPUs to others while
/// they had work (all CPUs), in clock ticks: steal, from the first line of
/// `/proc/stat`.
pub fn machine_steal_ticks() -> io::Result<u64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    parse_machine_steal(&stat).ok_or_else(|| io::Error::other("malformed /proc/stat"))
}

/// See [`machine_steal_ticks`].
pub fn parse_machine_steal(stat: &str) -> Option<u64> {
    cpu_line(stat)?.split_whitespace().nth(8)?.parse().ok()
}

/// The first line of `/proc/stat`'s text: all CPUs together.
fn cpu_line(stat: &str) -> Option<&str> {
    stat.lines().find(|l| l.starts_with("cpu "))
}

/// The 1-minute load average.
pub fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// The accept-queue limit (the backlog given to `listen`) of the TCP
/// listener on `addr`, as `ss` reports it (its Send-Q column).
pub fn listen_backlog(addr: std::net::SocketAddr) -> Option<u64> {
    let output = std::process::Command::new("ss")
        .args(["-ltnH", &format!("sport = :{}", addr.port())])
        .output()
        .ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    let line = text.lines().find(|l| l.contains(&addr.to_string()))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 if that fails).
pub fn clock_ticks_per_second() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_a_tricky_name() {
        let stat =
            "1234 (a (b) c) S 1 1234 1234 0 -1 4194560 100 0 0 0 17 5 0 0 20 0 3 0 100 1000 50";
        assert_eq!(parse_stat_ticks(stat), Some(22));
    }

    #[test]
    fn parses_status_and_netstat() {
        assert_eq!(
            parse_status_kb("Name:\tx\nVmRSS:\t  1234 kB\n", "VmRSS:"),
            Some(1234)
        );
        let netstat = "TcpExt: SyncookiesSent ListenOverflows ListenDrops\n\
                       TcpExt: 0 3 4\nIpExt: InNoRoutes\nIpExt: 0\n";
        let ext = parse_netstat(netstat, "TcpExt:");
        assert_eq!(ext["ListenOverflows"], 3);
        assert_eq!(ext["ListenDrops"], 4);
    }

    #[test]
    fn parses_machine_busy_time() {
        let stat = "cpu  10 1 5 100 7 2 3 4 0 0\ncpu0 1 1 1 1 1 1 1 1 0 0\n";
        assert_eq!(parse_machine_busy(stat), Some(10 + 1 + 5 + 2 + 3 + 4));
        assert_eq!(parse_machine_steal(stat), Some(4));
        assert_eq!(parse_machine_steal("cpu  10 1 5 100\n"), None);
    }

    #[test]
    fn samples_this_process() {
        let me = Sample::of(std::process::id()).unwrap();
        assert!(me.rss_bytes > 0 && me.fds > 0 && me.cpu_ns > 0);
    }
}
