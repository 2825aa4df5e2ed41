//! The rule driven over `tokio::io::duplex` by a small forwarding adapter: real reads cut
//! frames wherever the pipe's capacity makes them.

use bytes::BytesMut;

use super::messages::{be, cat, fe};
use super::*;

/// A tiny forwarding loop over in-memory pipes: reads what the client sends and what the
/// server answers (pipes of `capacity` bytes, so reads cut frames anywhere), passes each read
/// through the rule and on, and stops at the first verdict other than Keep. Returns it, with
/// how many server bytes had been read by then.
async fn forward_over_duplex(
    mode: PoolMode,
    script: Vec<(Side, Vec<u8>)>,
    capacity: usize,
) -> (Verdict, usize) {
    use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt};
    let (mut client, mut client_side) = duplex(capacity);
    let (mut server, mut server_side) = duplex(capacity);
    // The client and the server play the script: each waits for the other's bytes before
    // sending its next step.
    let client_script = script.clone();
    let server_script = script;
    let client_task = tokio::spawn(async move {
        for (from, bytes) in client_script {
            if from == Client {
                client.write_all(&bytes).await.unwrap();
            } else {
                let mut buf = vec![0; bytes.len()];
                client.read_exact(&mut buf).await.unwrap();
                assert_eq!(buf, bytes, "the client gets the server's bytes unchanged");
            }
        }
        client
    });
    let server_task = tokio::spawn(async move {
        for (from, bytes) in server_script {
            if from == Server {
                server.write_all(&bytes).await.unwrap();
            } else {
                let mut buf = vec![0; bytes.len()];
                server.read_exact(&mut buf).await.unwrap();
                assert_eq!(buf, bytes, "the server gets the client's bytes unchanged");
            }
        }
        server
    });
    let mut rule = Rule::new(mode);
    let mut from_server = 0;
    let (mut cbuf, mut sbuf) = (BytesMut::new(), BytesMut::new());
    let verdict = loop {
        cbuf.reserve(64);
        sbuf.reserve(64);
        tokio::select! {
            biased;
            r = server_side.read_buf(&mut sbuf) => {
                assert!(r.unwrap() > 0, "the server does not close");
                from_server += sbuf.len();
                let verdict = rule.server(&sbuf);
                client_side.write_all(&sbuf).await.unwrap();
                sbuf.clear();
                if verdict != Verdict::Keep {
                    break verdict;
                }
            }
            r = client_side.read_buf(&mut cbuf) => {
                assert!(r.unwrap() > 0, "the client does not close");
                let before = rule.forwarded.len();
                rule.client(&cbuf);
                server_side.write_all(&rule.forwarded[before..]).await.unwrap();
                cbuf.clear();
            }
        }
    };
    client_task.await.unwrap();
    server_task.await.unwrap();
    (verdict, from_server)
}

#[tokio::test]
async fn over_duplex_the_server_goes_back_after_the_last_byte_whatever_the_reads() {
    let scripts: Vec<Vec<(Side, Vec<u8>)>> = vec![
        vec![
            (Client, fe::query("begin")),
            (Server, cat(&[be::complete("BEGIN"), be::in_tx()])),
            (Client, fe::extended("select 1")),
            (
                Server,
                cat(&[
                    be::extended_select_one(),
                    be::param("TimeZone", "UTC"),
                    be::in_tx(),
                ]),
            ),
            (Client, fe::query("commit")),
            (Server, cat(&[be::complete("COMMIT"), be::idle()])),
        ],
        vec![
            (Client, fe::extended("copy t from stdin")),
            (
                Server,
                cat(&[be::parse_complete(), be::bind_complete(), be::copy_in()]),
            ),
            (
                Client,
                cat(&[fe::copy_data("1\n"), fe::copy_done(), fe::sync()]),
            ),
            (Server, cat(&[be::complete("COPY 1"), be::idle()])),
        ],
        vec![
            (Client, fe::query("copy t to stdout")),
            (
                Server,
                cat(&[
                    be::copy_out(),
                    be::copy_data("1\n"),
                    be::copy_done(),
                    be::complete("COPY 1"),
                    be::idle(),
                ]),
            ),
        ],
    ];
    for script in scripts {
        let server_bytes: usize = script
            .iter()
            .filter(|(f, _)| *f == Server)
            .map(|(_, b)| b.len())
            .sum();
        for capacity in [1, 2, 3, 5, 8, 13, 64, 4096] {
            // A rule that never releases would wait forever: fail instead.
            let run = forward_over_duplex(TX, script.clone(), capacity);
            let (verdict, read) = tokio::time::timeout(std::time::Duration::from_secs(5), run)
                .await
                .unwrap_or_else(|_| {
                    panic!("no verdict after the whole script, pipe of {capacity} bytes")
                });
            assert_eq!(verdict, Verdict::Release, "pipe of {capacity} bytes");
            assert_eq!(
                read, server_bytes,
                "released after the last byte, not before"
            );
        }
    }
}
