//! Where the CPU went: user + system time from `/proc/<pid>/stat`, split into the lab's
//! PostgreSQL cluster, the replicas, and the lab process itself (which hosts the mock
//! Executor and the load generator, so its share is the test bench, not the product).
//!
//! PostgreSQL is the postmaster and every child of it. A backend that exits during the
//! measurement is not lost: the postmaster reaps it, and the kernel adds the child's time
//! to the postmaster's `cutime`/`cstime`, which are counted too. The figures are totals
//! over a window (a [`CpuSample`] at each end), so they do not depend on sampling rate.

use std::path::Path;

use serde::Serialize;

/// Clock ticks per second for `/proc/*/stat` (100 on Linux).
pub const CLK_TCK: f64 = 100.0;

/// `(utime + stime, cutime + cstime)` of a process, in clock ticks.
fn stat_ticks(pid: i32) -> Option<(u64, u64, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let field = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    let ppid: i32 = f.get(1)?.parse().ok()?;
    Some((field(11)? + field(12)?, field(13)? + field(14)?, ppid))
}

/// User + system CPU time of one process so far, in clock ticks.
pub fn process_ticks(pid: i32) -> Option<u64> {
    stat_ticks(pid).map(|(own, _, _)| own)
}

/// The postmaster's pid, from `postmaster.pid` in the cluster's data folder.
pub fn postmaster_pid(pgdata: &Path) -> Option<i32> {
    std::fs::read_to_string(pgdata.join("postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// CPU ticks of a postmaster, its live children and its reaped children.
pub fn postgres_ticks(postmaster: i32) -> u64 {
    let Some((own, reaped, _)) = stat_ticks(postmaster) else {
        return 0;
    };
    let children: u64 = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(stat_ticks)
        .filter(|(_, _, ppid)| *ppid == postmaster)
        .map(|(t, _, _)| t)
        .sum();
    own + reaped + children
}

/// CPU ticks so far, by owner.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuSample {
    pub postgres: u64,
    pub replicas: u64,
    pub lab: u64,
}

impl CpuSample {
    pub fn take(postmaster: Option<i32>, replica_pids: &[i32]) -> Self {
        Self {
            postgres: postmaster.map_or(0, postgres_ticks),
            replicas: replica_pids.iter().filter_map(|p| process_ticks(*p)).sum(),
            lab: process_ticks(i32::try_from(std::process::id()).unwrap_or(0)).unwrap_or(0),
        }
    }
}

/// CPU seconds spent between two samples, and per 1,000 runs.
#[derive(Debug, Clone, Serialize)]
pub struct CpuSplit {
    pub postgres_s: f64,
    pub replicas_s: f64,
    /// The lab process: mock Executor and load generator (not the product).
    pub lab_s: f64,
    /// What "runs" counts here (e.g. launches accepted by the Executor in the window).
    pub runs_counted: u64,
    pub postgres_s_per_1000_runs: f64,
    pub replicas_s_per_1000_runs: f64,
    pub lab_s_per_1000_runs: f64,
}

impl CpuSplit {
    pub fn between(a: CpuSample, b: CpuSample, runs: u64) -> Self {
        let s = |x: u64, y: u64| y.saturating_sub(x) as f64 / CLK_TCK;
        let per = |secs: f64| {
            if runs == 0 {
                f64::NAN
            } else {
                secs * 1000.0 / runs as f64
            }
        };
        let (pg, rep, lab) = (
            s(a.postgres, b.postgres),
            s(a.replicas, b.replicas),
            s(a.lab, b.lab),
        );
        Self {
            postgres_s: pg,
            replicas_s: rep,
            lab_s: lab,
            runs_counted: runs,
            postgres_s_per_1000_runs: per(pg),
            replicas_s_per_1000_runs: per(rep),
            lab_s_per_1000_runs: per(lab),
        }
    }

    /// Rows for a key/value table.
    pub fn rows(&self) -> Vec<(String, String)> {
        vec![
            (
                "CPU s / 1000 runs: PostgreSQL".into(),
                format!(
                    "{:.3}  ({:.1} s total)",
                    self.postgres_s_per_1000_runs, self.postgres_s
                ),
            ),
            (
                "CPU s / 1000 runs: replicas".into(),
                format!(
                    "{:.3}  ({:.1} s total)",
                    self.replicas_s_per_1000_runs, self.replicas_s
                ),
            ),
            (
                "CPU s / 1000 runs: lab process".into(),
                format!(
                    "{:.3}  ({:.1} s total; mock Executor + load generator)",
                    self.lab_s_per_1000_runs, self.lab_s
                ),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_cpu_time_and_no_postmaster_means_zero() {
        let me = i32::try_from(std::process::id()).unwrap();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        assert!(x > 0);
        assert!(process_ticks(me).is_some());
        assert_eq!(postgres_ticks(-1), 0);
        let split = CpuSplit::between(CpuSample::default(), CpuSample::default(), 0);
        assert!(split.postgres_s_per_1000_runs.is_nan());
    }
}
