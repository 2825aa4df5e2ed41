//! The async runtime, sized by `pgtide.workers`: built here so that the daemon, `pgtide demo`
//! and the test harness run pgtide on the same kind of runtime.
//!
//! One worker gets tokio's current-thread scheduler: sessions, pools and timers share one thread
//! with no work stealing and no cross-thread wake-ups. In the comparison benchmark this costs
//! measurably less CPU per transaction than a multi-thread runtime with one or two workers,
//! which matters most where the pooler shares a few cores with PostgreSQL (docs/benchmarks.md).

use std::io;

use tokio::runtime::{Builder, Runtime};

/// Builds the runtime for `workers` threads (0 = one per CPU).
pub fn build(workers: u32) -> io::Result<Runtime> {
    let mut builder = match workers {
        1 => Builder::new_current_thread(),
        0 => Builder::new_multi_thread(),
        n => {
            let mut b = Builder::new_multi_thread();
            b.worker_threads(n as usize);
            b
        }
    };
    builder.enable_all().thread_name("pgtide-worker").build()
}
