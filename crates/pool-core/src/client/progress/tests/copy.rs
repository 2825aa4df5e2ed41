//! COPY in both directions, Terminate, and what the rule notes besides the release.

use super::messages::{be, cat, fe};
use super::*;

#[test]
fn copy_from_stdin_by_simple_query_releases_after_its_ready_for_query() {
    let script = [
        (Client, fe::query("copy t from stdin")),
        (Server, be::copy_in()),
        (Client, cat(&[fe::copy_data("1\n"), fe::copy_data("2\n")])),
        (Client, fe::copy_done()),
        (Server, cat(&[be::complete("COPY 2"), be::idle()])),
    ];
    assert_exactly_at_end(TX, &script, Some(Verdict::Release));
    let mut rule = Rule::new(TX);
    rule.client(&script[0].1);
    rule.server(&script[1].1);
    rule.client(&script[2].1);
    assert!(!rule.reusable(), "mid-COPY");
}

#[test]
fn copy_fail_ends_the_copy_with_an_error_and_ready_for_query() {
    let script = [
        (Client, fe::query("copy t from stdin")),
        (Server, be::copy_in()),
        (Client, cat(&[fe::copy_data("1\n"), fe::copy_fail()])),
        (
            Server,
            cat(&[
                be::error(b"57014", "COPY from stdin failed: no more"),
                be::idle(),
            ]),
        ),
    ];
    assert_exactly_at_end(TX, &script, Some(Verdict::Release));
}

#[test]
fn copy_from_stdin_by_extended_protocol_discounts_the_ignored_sync() {
    // libpq/JDBC send Parse/Bind/Describe/Execute/Sync; the Execute starts COPY FROM STDIN and
    // PostgreSQL, now in copy-in mode, ignores that Sync. Only the Sync after CopyDone gets a
    // ReadyForQuery.
    let script = [
        (Client, fe::extended("copy t from stdin")),
        (
            Server,
            cat(&[be::parse_complete(), be::bind_complete(), be::copy_in()]),
        ),
        (Client, fe::copy_data("1\n")),
        (Client, cat(&[fe::copy_done(), fe::sync()])),
        (Server, cat(&[be::complete("COPY 1"), be::idle()])),
    ];
    assert_exactly_at_end(TX, &script, Some(Verdict::Release));
    // Without the discount the first Sync would be waited for forever.
    let mut rule = Rule::new(TX);
    rule.client(&script[0].1);
    assert_eq!(rule.p.pending, 1);
    rule.client(&script[2].1);
    assert_eq!(
        rule.p.pending, 0,
        "the Sync before the copy data was ignored"
    );
}

#[test]
fn copy_from_stdin_pipelined_in_one_write_is_counted_once() {
    let script = [
        (
            Client,
            cat(&[
                fe::extended("copy t from stdin"),
                fe::copy_data("1\n"),
                fe::copy_data("2\n"),
                fe::copy_done(),
                fe::sync(),
            ]),
        ),
        (
            Server,
            cat(&[
                be::parse_complete(),
                be::bind_complete(),
                be::copy_in(),
                be::complete("COPY 2"),
                be::idle(),
            ]),
        ),
    ];
    assert_exactly_at_end(TX, &script, Some(Verdict::Release));
}

#[test]
fn copy_to_stdout_releases_after_the_copy_and_its_ready_for_query() {
    let script = [
        (Client, fe::query("copy t to stdout")),
        (
            Server,
            cat(&[
                be::copy_out(),
                be::copy_data("1\n"),
                be::copy_data("2\n"),
                be::copy_done(),
                be::complete("COPY 2"),
                be::idle(),
            ]),
        ),
    ];
    assert_exactly_at_end(TX, &script, Some(Verdict::Release));
}

// ---- Terminate ----

#[test]
fn terminate_is_cut_from_what_goes_to_the_server() {
    let mut rule = Rule::new(TX);
    let q = fe::query("select 1");
    rule.client(&cat(&[q.clone(), fe::terminate(), fe::query("never")]));
    assert_eq!(
        rule.forwarded, q,
        "Terminate and what follows stay with pgtide"
    );
    assert!(rule.p.terminated);
    assert_eq!(rule.p.pending, 1, "frames after Terminate are not counted");
}

#[test]
fn terminate_mid_transaction_closes_the_server_and_when_idle_returns_it() {
    let mut rule = Rule::new(TX);
    rule.client(&fe::query("begin"));
    rule.server(&cat(&[be::complete("BEGIN"), be::in_tx()]));
    rule.client(&fe::terminate());
    assert!(rule.p.terminated);
    assert!(!rule.reusable(), "inside a transaction");

    let mut rule = Rule::new(PoolMode::Session);
    rule.client(&fe::query("select 1"));
    rule.server(&cat(&[be::select_one(), be::idle()]));
    rule.client(&fe::terminate());
    assert!(rule.p.terminated && rule.reusable());

    // Terminate during COPY FROM STDIN: no answer will ever come.
    let mut rule = Rule::new(TX);
    rule.client(&fe::query("copy t from stdin"));
    rule.server(&be::copy_in());
    rule.client(&cat(&[fe::copy_data("1\n"), fe::terminate()]));
    assert!(!rule.reusable());
}

#[test]
fn terminate_split_across_reads_is_cut_and_a_torn_one_closes_the_server() {
    let q = fe::query("select 1");
    let x = fe::terminate();
    for at in 0..=x.len() {
        let mut rule = Rule::new(PoolMode::Session);
        rule.client(&q);
        rule.server(&cat(&[be::select_one(), be::idle()]));
        rule.client(&x[..at]);
        rule.client(&x[at..]);
        assert!(rule.p.terminated, "split at {at}");
        // What was read of Terminate before the split went to the server (nobody knew it was
        // a Terminate yet); nothing after the split does.
        let sent_early = if at == x.len() { 0 } else { at };
        assert_eq!(rule.forwarded.len(), q.len() + sent_early, "split at {at}");
        assert_eq!(
            rule.reusable(),
            sent_early == 0,
            "split at {at}: a server holding part of a Terminate is closed"
        );
    }
}

// ---- what the rule notes besides ----

#[test]
fn query_canceled_is_counted_by_its_code_whatever_the_language() {
    let mut rule = Rule::new(TX);
    rule.client(&fe::query("select pg_sleep(10)"));
    let german = be::error(
        b"57014",
        "storniere Anfrage wegen Zeitüberschreitung der Anweisung",
    );
    for byte in cat(&[german, be::idle()]).chunks(1) {
        rule.server(byte);
    }
    assert_eq!(rule.p.canceled, 1);
    assert!(!rule.p.server_shutting_down);
    let mut rule = Rule::new(TX);
    rule.client(&fe::query("select 1"));
    rule.server(&be::error(
        b"57P01",
        "terminating connection due to administrator command",
    ));
    assert!(rule.p.server_shutting_down);
    assert_eq!(rule.p.canceled, 0);
}

#[test]
fn a_half_read_frame_is_never_a_release_point() {
    let mut rule = Rule::new(TX);
    rule.client(&fe::query("select 1"));
    let answer = cat(&[be::select_one(), be::idle()]);
    let (body, last) = answer.split_at(answer.len() - 1);
    assert_eq!(rule.server(body), Verdict::Keep);
    assert!(!rule.reusable(), "ReadyForQuery half read");
    assert_eq!(rule.server(last), Verdict::Release);
}
