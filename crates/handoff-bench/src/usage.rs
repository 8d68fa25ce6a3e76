//! What a run cost the machine, read from `/proc` (Linux only): the CPU time (user + system)
//! and resident memory of the server and of loadgen itself, and the whole machine's busy time,
//! so a report can say whether someone else's build shared the cores.

use std::time::Instant;

/// Clock ticks per second in `/proc/*/stat` (`USER_HZ`, fixed at 100 on Linux).
const TICKS_PER_S: f64 = 100.0;

/// One look at the processes and the machine.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub at: Instant,
    /// Server CPU time so far, in ticks (`None` when its pid is unknown).
    pub server_ticks: Option<u64>,
    pub server_rss_kib: Option<u64>,
    pub own_ticks: Option<u64>,
    pub own_rss_kib: Option<u64>,
    /// Machine-wide (busy, total) ticks over every core, from `/proc/stat`.
    pub machine: Option<(u64, u64)>,
}

impl Sample {
    pub fn take(server_pid: Option<u32>) -> Self {
        let server = server_pid.map(|p| format!("/proc/{p}"));
        Self {
            at: Instant::now(),
            server_ticks: server.as_deref().and_then(cpu_ticks),
            server_rss_kib: server.as_deref().and_then(rss_kib),
            own_ticks: cpu_ticks("/proc/self"),
            own_rss_kib: rss_kib("/proc/self"),
            machine: machine_ticks(),
        }
    }
}

/// CPU used between two samples, in cores (1.0 = one core busy all the time).
#[derive(Debug, Clone, Copy, Default)]
pub struct Between {
    pub server_cores: Option<f64>,
    pub own_cores: Option<f64>,
    /// The whole machine, in cores busy.
    pub machine_cores: Option<f64>,
}

impl Between {
    pub fn of(a: &Sample, b: &Sample) -> Self {
        let secs = b.at.duration_since(a.at).as_secs_f64().max(1e-9);
        #[allow(clippy::cast_precision_loss)]
        let cores = |x: Option<u64>, y: Option<u64>| {
            Some(y?.saturating_sub(x?) as f64 / TICKS_PER_S / secs)
        };
        #[allow(clippy::cast_precision_loss)]
        let machine = match (a.machine, b.machine) {
            (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
                // Share of all cores busy, times the number of cores.
                let share = (b1 - b0) as f64 / (t1 - t0) as f64;
                Some(share * cores_online() as f64)
            }
            _ => None,
        };
        Self {
            server_cores: cores(a.server_ticks, b.server_ticks),
            own_cores: cores(a.own_ticks, b.own_ticks),
            machine_cores: machine,
        }
    }
}

/// `utime + stime` of a process, fields 14 and 15 of `stat` (counted after the `)` that
/// closes its name, which may itself hold spaces).
fn cpu_ticks(proc_dir: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("{proc_dir}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn rss_kib(proc_dir: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("{proc_dir}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// (busy, total) ticks of the `cpu` line of `/proc/stat`; idle and iowait count as not busy.
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4)?;
    Some((total - idle, total))
}

/// Cores the machine has (the `cpuN` lines of `/proc/stat`, which `machine` sums over).
pub fn cores_online() -> usize {
    std::fs::read_to_string("/proc/stat")
        .map(|s| {
            s.lines()
                .filter(|l| {
                    l.starts_with("cpu") && l[3..].starts_with(|c: char| c.is_ascii_digit())
                })
                .count()
        })
        .unwrap_or(1)
        .max(1)
}

/// The three load averages of `/proc/loadavg`, e.g. "0.52 0.40 0.31".
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_can_be_measured() {
        let a = Sample::take(Some(std::process::id()));
        let mut x = 0_u64;
        for i in 0..5_000_000_u64 {
            x = x.wrapping_add(i * i);
        }
        assert!(x > 0);
        let b = Sample::take(Some(std::process::id()));
        assert!(b.server_ticks >= a.server_ticks);
        assert!(b.own_rss_kib.is_some_and(|k| k > 0));
        let u = Between::of(&a, &b);
        assert!(u.own_cores.is_some_and(|c| c >= 0.0));
    }
}
