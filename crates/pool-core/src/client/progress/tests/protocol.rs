//! Simple and extended query protocol, pipelining, and the pooling modes.

use super::messages::{be, cat, fe};
use super::*;

#[test]
fn a_simple_query_releases_at_the_last_byte_of_ready_for_query_idle() {
    let script = [
        (Client, fe::query("select 1")),
        (Server, cat(&[be::select_one(), be::idle()])),
    ];
    assert_exactly_at_end(TX, &script, Some(Verdict::Release));
    assert_exactly_at_end(PoolMode::Statement, &script, Some(Verdict::Release));
}

#[test]
fn a_transaction_block_holds_the_server_until_ready_for_query_says_idle() {
    let script = [
        (Client, fe::query("begin")),
        (Server, cat(&[be::complete("BEGIN"), be::in_tx()])),
        (Client, fe::query("select 1")),
        (Server, cat(&[be::select_one(), be::in_tx()])),
        (Client, fe::query("commit")),
        (Server, cat(&[be::complete("COMMIT"), be::idle()])),
    ];
    assert_exactly_at_end(TX, &script, Some(Verdict::Release));
}

#[test]
fn a_failed_transaction_holds_the_server_until_its_rollback() {
    let script = [
        (Client, fe::query("begin; select 1/0")),
        (
            Server,
            cat(&[
                be::complete("BEGIN"),
                be::error(b"22012", "division by zero"),
                be::failed_tx(),
            ]),
        ),
        (Client, fe::query("rollback")),
        (Server, cat(&[be::complete("ROLLBACK"), be::idle()])),
    ];
    assert_exactly_at_end(TX, &script, Some(Verdict::Release));
}

#[test]
fn statement_mode_refuses_a_transaction_block_at_its_first_answer() {
    let script = [
        (Client, fe::query("begin")),
        (Server, cat(&[be::complete("BEGIN"), be::in_tx()])),
    ];
    assert_exactly_at_end(
        PoolMode::Statement,
        &script,
        Some(Verdict::TransactionBlock),
    );
}

#[test]
fn session_mode_never_releases_but_an_idle_server_is_reusable() {
    let script = [
        (Client, fe::query("select 1")),
        (Server, cat(&[be::select_one(), be::idle()])),
    ];
    assert_exactly_at_end(PoolMode::Session, &script, None);
    let mut rule = Rule::new(PoolMode::Session);
    rule.client(&script[0].1);
    assert!(!rule.reusable(), "a query in flight");
    rule.server(&script[1].1);
    assert!(rule.reusable());
}

#[test]
fn pipelined_queries_release_only_after_the_last_answer() {
    let script = [
        (Client, cat(&[fe::query("select 1"), fe::query("select 2")])),
        (Server, cat(&[be::select_one(), be::idle()])),
        (Server, cat(&[be::select_one(), be::idle()])),
    ];
    assert_exactly_at_end(TX, &script, Some(Verdict::Release));
    let mut rule = Rule::new(TX);
    rule.client(&script[0].1);
    assert_eq!(rule.p.pending, 2);
    assert_eq!(rule.server(&script[1].1), Verdict::Keep, "one still due");
    assert_eq!(rule.p.pending, 1);
}

#[test]
fn a_multi_statement_query_is_one_sync_point() {
    let script = [
        (Client, fe::query("select 1; select 1")),
        (
            Server,
            cat(&[be::select_one(), be::select_one(), be::idle()]),
        ),
    ];
    assert_exactly_at_end(TX, &script, Some(Verdict::Release));
}

#[test]
fn parameter_status_updates_do_not_end_the_answer() {
    // SET reports the new value before ReadyForQuery: released at ReadyForQuery.
    let script = [
        (Client, fe::query("set timezone = 'UTC'")),
        (
            Server,
            cat(&[
                be::complete("SET"),
                be::param("TimeZone", "UTC"),
                be::idle(),
            ]),
        ),
    ];
    assert_exactly_at_end(TX, &script, Some(Verdict::Release));
    // A frame after ReadyForQuery means the server is talking again: not released on it.
    let mut rule = Rule::new(TX);
    rule.client(&fe::query("select 1"));
    let after = cat(&[be::select_one(), be::idle(), be::param("TimeZone", "UTC")]);
    assert_eq!(rule.server(&after), Verdict::Keep);
    assert!(!rule.p.at_ready);
    let mut rule = Rule::new(TX);
    rule.client(&fe::query("select 1"));
    let noticed = cat(&[be::notice("hi"), be::select_one(), be::idle()]);
    assert_eq!(rule.server(&noticed), Verdict::Release);
}

#[test]
fn a_client_frame_half_sent_keeps_the_server() {
    // The client's next query has started to arrive when the answer to the first one ends:
    // its stream is not at a boundary, so the server stays with it.
    let next = fe::query("select 2");
    let mut rule = Rule::new(TX);
    rule.client(&fe::query("select 1"));
    rule.client(&next[..3]);
    assert_eq!(
        rule.server(&cat(&[be::select_one(), be::idle()])),
        Verdict::Keep
    );
    assert!(!rule.reusable(), "half a frame went to this server");
    rule.client(&next[3..]);
    assert_eq!(
        rule.server(&cat(&[be::select_one(), be::idle()])),
        Verdict::Release
    );
}

// ---- extended protocol ----

#[test]
fn extended_query_releases_at_the_ready_for_query_after_sync() {
    let script = [
        (Client, fe::extended("select $1")),
        (Server, cat(&[be::extended_select_one(), be::idle()])),
    ];
    assert_exactly_at_end(TX, &script, Some(Verdict::Release));
}

#[test]
fn extended_messages_without_sync_hold_the_server() {
    // Parse/Bind/Execute/Flush: the server answers but waits for the Sync; no release, and a
    // client leaving now leaves the server mid-exchange.
    let script = [
        (
            Client,
            cat(&[
                fe::parse("select 1"),
                fe::bind(),
                fe::execute(),
                fe::flush(),
            ]),
        ),
        (Server, be::extended_select_one()),
        (Client, fe::sync()),
        (Server, be::idle()),
    ];
    assert_exactly_at_end(TX, &script, Some(Verdict::Release));
    let mut rule = Rule::new(TX);
    rule.client(&script[0].1);
    rule.server(&script[1].1);
    assert!(!rule.reusable());
}

#[test]
fn an_error_awaiting_sync_is_answered_only_after_the_sync() {
    // After an error the server skips messages until Sync, then sends ReadyForQuery.
    let script = [
        (
            Client,
            cat(&[fe::parse("select 1/0"), fe::bind(), fe::execute()]),
        ),
        (
            Server,
            cat(&[
                be::parse_complete(),
                be::bind_complete(),
                be::error(b"22012", "division by zero"),
            ]),
        ),
        (Client, fe::sync()),
        (Server, be::idle()),
    ];
    assert_exactly_at_end(TX, &script, Some(Verdict::Release));
    let mut rule = Rule::new(TX);
    rule.client(&script[0].1);
    rule.server(&script[1].1);
    assert!(
        !rule.reusable(),
        "the server awaits a Sync nobody will send"
    );
}

#[test]
fn pipelined_extended_queries_release_after_the_last_sync_is_answered() {
    let script = [
        (
            Client,
            cat(&[fe::extended("select 1"), fe::extended("select 2")]),
        ),
        (
            Server,
            cat(&[
                be::extended_select_one(),
                be::idle(),
                be::extended_select_one(),
                be::idle(),
            ]),
        ),
    ];
    assert_exactly_at_end(TX, &script, Some(Verdict::Release));
    let mut rule = Rule::new(TX);
    rule.client(&script[0].1);
    let first_answer = cat(&[be::extended_select_one(), be::idle()]);
    assert_eq!(rule.server(&first_answer), Verdict::Keep);
}

#[test]
fn extended_messages_pipelined_behind_a_query_hold_the_server_past_its_answer() {
    // The client pipelines Parse/Bind/Execute (no Sync yet) behind a simple query: the
    // query's ReadyForQuery 'I' answers every sync point, yet the server holds an unfinished
    // extended exchange of this client.
    let script = [
        (
            Client,
            cat(&[
                fe::query("select 1"),
                fe::parse("select 2"),
                fe::bind(),
                fe::execute(),
            ]),
        ),
        (Server, cat(&[be::select_one(), be::idle()])),
        (Server, be::extended_select_one()),
        (Client, fe::sync()),
        (Server, be::idle()),
    ];
    assert_exactly_at_end(TX, &script, Some(Verdict::Release));
    let mut rule = Rule::new(TX);
    rule.client(&script[0].1);
    assert_eq!(rule.server(&script[1].1), Verdict::Keep);
    assert!(
        rule.p.answered() && !rule.reusable(),
        "awaiting this client's Sync"
    );
}
