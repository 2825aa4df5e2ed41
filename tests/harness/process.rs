//! Looking at and killing processes by PID, through `/proc` (the harness is Linux-only).
//!
//! A process counts as alive only if it exists and is not a zombie: in containers PID 1 may
//! never reap orphans, and a dead postmaster left as a zombie would otherwise look alive for
//! ever. Killing is always by a PID we know to be ours (the postmaster from `postmaster.pid`,
//! its children found through their parent PID), never by process name.

use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

/// The state letter and parent PID from `/proc/<pid>/stat`, if the process exists.
fn stat(pid: u32) -> Option<(char, u32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ppid …": comm may hold spaces and parentheses, so split after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// True if `pid` exists and is neither a zombie nor dead.
pub fn pid_alive(pid: u32) -> bool {
    matches!(stat(pid), Some((state, _)) if state != 'Z' && state != 'X')
}

/// The command line of `pid`, arguments joined by spaces.
pub(crate) fn cmdline(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|&b| b == 0)
            .map(String::from_utf8_lossy)
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// Live processes whose parent is `parent`.
pub(crate) fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| matches!(stat(pid), Some((s, ppid)) if ppid == parent && s != 'Z'))
        .collect()
}

/// Sends `signal` to `pid`; false if it could not be delivered (e.g. the process is gone).
pub(crate) fn signal(pid: u32, signal: libc::c_int) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false; // 0 and negatives would signal whole process groups
    }
    // SAFETY: kill has no memory-safety preconditions; pid is a single positive PID.
    unsafe { libc::kill(pid, signal) == 0 }
}

/// Polls until none of `pids` is alive; false if some still are after `timeout`.
pub(crate) fn wait_gone(pids: &[u32], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !pids.iter().any(|&p| pid_alive(p)) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        sleep(Duration::from_millis(5));
    }
}

/// SIGKILLs a postmaster and every process it forked, and waits until all are gone.
///
/// The postmaster is stopped first (SIGSTOP) so it cannot fork while its children are listed;
/// children are listed before it dies because afterwards they are re-parented and no longer
/// recognisable as its own.
pub(crate) fn kill_tree(postmaster: u32, timeout: Duration) -> bool {
    signal(postmaster, libc::SIGSTOP);
    let children = children_of(postmaster);
    signal(postmaster, libc::SIGKILL);
    for &child in &children {
        signal(child, libc::SIGKILL);
    }
    let mut all = children;
    all.push(postmaster);
    wait_gone(&all, timeout)
}

/// The postmaster PID recorded in `<data_dir>/postmaster.pid` (its first line), whether or not
/// that process is still alive.
pub(crate) fn postmaster_pid_in(data_dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    text.lines().next()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_nonsense_is_not() {
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(u32::MAX - 1));
        assert!(!signal(0, 0));
    }

    #[test]
    fn children_and_kill_tree_see_a_spawned_child() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let pid = child.id();
        assert!(children_of(std::process::id()).contains(&pid));
        // The child stays a zombie until we reap it: alive must already say false.
        assert!(signal(pid, libc::SIGKILL));
        assert!(wait_gone(&[pid], Duration::from_secs(5)));
        child.wait().expect("reap");
    }
}
