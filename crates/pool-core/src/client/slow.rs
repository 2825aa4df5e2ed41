//! The slow query log: queries (sync point to ReadyForQuery) and transactions (first byte to
//! server release) over `slow_query_threshold` are logged, counted and put in the event ring,
//! with the time split into waiting for a server (the pool's share) and server time (the
//! database's share) — the answer to "which queries are slow, and is it the pool or the
//! database?". Off (no clock reads, no SQL copies) unless a threshold is set.

use std::time::Duration;

use crate::clock::Instant;

use crate::report::{Failures, SlowQuery};

/// What a session remembers to report slow work; `None` in the session when the log is off.
#[derive(Debug)]
pub(super) struct SlowLog {
    pub threshold: Duration,
    /// Characters of SQL kept.
    pub chars: usize,
    /// Replace literals with `?` before logging.
    pub redact: bool,
    /// The SQL of the query in flight (last Query or Parse), truncated.
    pub sql: String,
    /// The first SQL of the transaction, for the transaction-level report.
    pub first_sql: String,
    /// When the client's first bytes of this transaction arrived.
    pub tx_started: Option<Instant>,
    /// How long it waited for a server.
    pub waited: Duration,
    /// When the oldest unanswered query was sent.
    pub query_started: Option<Instant>,
    /// Server time of the transaction's queries so far.
    pub server_time: Duration,
    /// A query of this transaction was already reported (no duplicate transaction line).
    pub reported: bool,
}

impl SlowLog {
    pub fn new(threshold: Duration, chars: usize, redact: bool) -> Self {
        SlowLog {
            threshold,
            chars,
            redact,
            sql: String::new(),
            first_sql: String::new(),
            tx_started: None,
            waited: Duration::ZERO,
            query_started: None,
            server_time: Duration::ZERO,
            reported: false,
        }
    }

    /// The client's bytes for a new transaction arrived.
    pub fn transaction_starts(&mut self, now: Instant) {
        self.tx_started = Some(now);
        self.query_started = Some(now);
        self.server_time = Duration::ZERO;
        self.reported = false;
        self.first_sql.clear();
    }

    /// Notes the statement of a Query or Parse frame the client sent; `body` is `None` when it
    /// was too long to capture.
    pub fn saw_statement(&mut self, frame_tag: u8, body: Option<&[u8]>) {
        let Some(body) = body else {
            self.saw_sql(b"(statement text too long to capture)");
            return;
        };
        match frame_tag {
            pgtide_protocol::tag::frontend::QUERY => self.saw_sql(body),
            pgtide_protocol::tag::frontend::PARSE => {
                // Statement name, then the SQL.
                let name_end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
                self.saw_sql(body.get(name_end + 1..).unwrap_or_default());
            }
            _ => {}
        }
    }

    /// Notes the SQL text of a Query or Parse body (NUL-terminated, possibly after a name).
    pub fn saw_sql(&mut self, sql: &[u8]) {
        let end = sql.iter().position(|&b| b == 0).unwrap_or(sql.len());
        let text = String::from_utf8_lossy(&sql[..end]);
        self.sql.clear();
        if self.redact {
            self.sql.push_str(&redact_literals(&text));
        } else {
            self.sql.push_str(&text);
        }
        if let Some((i, _)) = self.sql.char_indices().nth(self.chars) {
            self.sql.truncate(i);
            self.sql.push('…');
        }
        if self.first_sql.is_empty() {
            self.first_sql.push_str(&self.sql);
        }
    }

    /// A query was sent while none was outstanding.
    pub fn query_sent(&mut self) {
        if self.query_started.is_none() {
            self.query_started = Some(Instant::now());
        }
    }

    /// Every outstanding query was answered: report it when slow.
    pub fn query_done(&mut self, failures: &Failures, pool: &str, client: std::net::SocketAddr) {
        let Some(started) = self.query_started.take() else {
            return;
        };
        let total = started.elapsed();
        // The first query of a transaction includes the wait for a server.
        let waited = if self.server_time.is_zero() && !self.reported {
            self.waited.min(total)
        } else {
            Duration::ZERO
        };
        self.server_time += total - waited;
        if total >= self.threshold {
            self.reported = true;
            failures.report_slow(SlowQuery {
                pool,
                client,
                kind: "query",
                total,
                waited,
                server: total - waited,
                sql: &self.sql,
            });
        }
    }

    /// The transaction ended and its server was released: report it when slow and no query
    /// of it was reported already.
    pub fn transaction_done(
        &mut self,
        failures: &Failures,
        pool: &str,
        client: std::net::SocketAddr,
    ) {
        let Some(started) = self.tx_started.take() else {
            return;
        };
        self.query_started = None;
        let total = started.elapsed();
        if total >= self.threshold && !self.reported {
            failures.report_slow(SlowQuery {
                pool,
                client,
                kind: "transaction",
                total,
                waited: self.waited,
                server: self.server_time,
                sql: &self.first_sql,
            });
        }
    }
}

/// Replaces string, dollar-quoted and numeric literals with `?`, so logged SQL carries the
/// statement's shape but not its data. Identifiers (even quoted ones), keywords and
/// `$1`-style parameters are kept.
pub fn redact_literals(sql: &str) -> String {
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let mut i = 0;
    let mut last = 0;
    while i < b.len() {
        let c = b[i];
        let prev_ident =
            i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_' || b[i - 1] == b'$');
        if c == b'\'' {
            // '...' with '' escapes (an E prefix is kept as is).
            let mut j = i + 1;
            while j < b.len() {
                if b[j] == b'\'' {
                    if j + 1 < b.len() && b[j + 1] == b'\'' {
                        j += 2;
                        continue;
                    }
                    break;
                }
                if b[j] == b'\\' {
                    j += 1;
                }
                j += 1;
            }
            out.push_str(&sql[last..i]);
            out.push('?');
            i = (j + 1).min(b.len());
            last = i;
        } else if c == b'"' {
            // A quoted identifier: kept.
            let end = b[i + 1..]
                .iter()
                .position(|&x| x == b'"')
                .map_or(b.len(), |p| i + 1 + p + 1);
            i = end;
        } else if c == b'$' && !prev_ident {
            // $tag$ ... $tag$ dollar quoting, or a $1 parameter (kept).
            let tag_end = b[i + 1..]
                .iter()
                .position(|&x| !(x.is_ascii_alphanumeric() || x == b'_'))
                .map(|p| i + 1 + p);
            match tag_end {
                Some(t) if b[t] == b'$' && !b[i + 1..t].iter().all(u8::is_ascii_digit) => {
                    let tag = &sql[i..=t];
                    let body_end = sql[t + 1..]
                        .find(tag)
                        .map_or(b.len(), |p| t + 1 + p + tag.len());
                    out.push_str(&sql[last..i]);
                    out.push('?');
                    i = body_end;
                    last = i;
                }
                _ => i += 1,
            }
        } else if c.is_ascii_digit() && !prev_ident {
            let mut j = i;
            while j < b.len() && (b[j].is_ascii_digit() || b[j] == b'.' || b[j] == b'e') {
                j += 1;
            }
            out.push_str(&sql[last..i]);
            out.push('?');
            i = j;
            last = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&sql[last.min(sql.len())..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_are_redacted_and_shape_is_kept() {
        assert_eq!(
            redact_literals("SELECT * FROM t1 WHERE name = 'O''Brien' AND id = 42 AND x > 1.5e3"),
            "SELECT * FROM t1 WHERE name = ? AND id = ? AND x > ?"
        );
        assert_eq!(
            redact_literals("UPDATE \"T 2\" SET v = $1 WHERE k = $tag$secret$tag$"),
            "UPDATE \"T 2\" SET v = $1 WHERE k = ?"
        );
        assert_eq!(
            redact_literals("SELECT pg_sleep(0.2)"),
            "SELECT pg_sleep(?)"
        );
        assert_eq!(redact_literals("SELECT 'unterminated"), "SELECT ?");
    }

    #[test]
    fn sql_is_truncated_on_a_char_boundary() {
        let mut log = SlowLog::new(Duration::from_millis(1), 5, false);
        log.saw_sql(b"SELECT \xc3\xa9\xc3\xa9\xc3\xa9\0");
        assert_eq!(log.sql, "SELEC…");
        log.saw_sql("INSERT é".as_bytes());
        assert_eq!(log.first_sql, "SELEC…");
    }
}
