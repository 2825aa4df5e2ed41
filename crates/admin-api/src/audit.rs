//! The audit trail: one structured log line (target `pgtide::audit`) per change made through the
//! API, naming who (the token's name, never the token), what, and old → new.
//!
//! The lines go to the log only: pool-core's event ring has no event kind for admin actions yet
//! (an `EventKind::Admin` would put them in `GET /v1/events` too).

use pgtide_config::InForce;

use crate::auth::Caller;
use crate::patch::Applied;

fn shown(v: Option<&InForce>) -> String {
    match v {
        Some(v) => format!("{} ({})", v.value, source_name(v.source)),
        None => "-".to_owned(),
    }
}

fn source_name(s: pgtide_config::Source) -> &'static str {
    match s {
        pgtide_config::Source::Default => "default",
        pgtide_config::Source::Config => "config",
        pgtide_config::Source::Override => "override",
        pgtide_config::Source::Controller => "controller",
    }
}

/// Logs the changes a patch made to `pool`; `after` is the pool's settings now.
pub fn limits_changed(who: &Caller, pool: &str, applied: &[Applied], after: &[InForce]) {
    for a in applied {
        let now = after.iter().find(|v| v.key == a.change.key);
        let action = if a.change.value.is_some() {
            "set_override"
        } else {
            "clear_override"
        };
        tracing::info!(
            target: "pgtide::audit",
            who = %who.name,
            action,
            pool,
            key = %a.change.key,
            old = %shown(a.before.as_ref()),
            new = %shown(now),
            "admin change"
        );
    }
}

/// Logs an action without old and new values (pause, reload, shutdown, ...).
pub fn action(who: &Caller, action: &str, target: &str, detail: &str) {
    tracing::info!(
        target: "pgtide::audit",
        who = %who.name,
        action,
        target,
        detail,
        "admin change"
    );
}
