//! A client that speaks the wire protocol itself over a blocking socket, for tests where the
//! exact messages matter (what a login reports, a Terminate in the middle of a COPY).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::{raw_message, startup_packet};

/// One connection, logged in.
pub struct Raw {
    pub stream: TcpStream,
    /// ParameterStatus of the login, by name as sent.
    pub params: BTreeMap<String, String>,
    /// BackendKeyData (process id, secret).
    pub key: (i32, i32),
}

/// An ErrorResponse's fields by their type byte ('C' SQLSTATE, 'M' message, 'S' severity...).
pub type Fields = BTreeMap<char, String>;

/// Decodes an ErrorResponse or NoticeResponse body.
pub fn fields(body: &[u8]) -> Fields {
    body.split(|&b| b == 0)
        .filter(|f| !f.is_empty())
        .map(|f| (f[0] as char, String::from_utf8_lossy(&f[1..]).into_owned()))
        .collect()
}

impl Raw {
    /// Logs in to `port` with `params` (user, database and any settings); the login's
    /// ErrorResponse when it is refused.
    pub fn login(port: u16, params: &[(&str, &str)]) -> Result<Raw, Fields> {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("tcp connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        stream
            .write_all(&startup_packet(3 << 16, params))
            .expect("send startup");
        let mut raw = Raw {
            stream,
            params: BTreeMap::new(),
            key: (0, 0),
        };
        loop {
            let (tag, body) = raw.read();
            match tag {
                b'S' => {
                    let mut parts = body.split(|&b| b == 0);
                    let name = String::from_utf8_lossy(parts.next().unwrap()).into_owned();
                    let value = String::from_utf8_lossy(parts.next().unwrap()).into_owned();
                    raw.params.insert(name, value);
                }
                b'K' => {
                    let n = |i: usize| i32::from_be_bytes(body[i..i + 4].try_into().unwrap());
                    raw.key = (n(0), n(4));
                }
                b'E' => return Err(fields(&body)),
                b'Z' => return Ok(raw),
                _ => {}
            }
        }
    }

    /// Reads one message: (tag, body).
    pub fn read(&mut self) -> (u8, Vec<u8>) {
        let mut head = [0u8; 5];
        self.stream
            .read_exact(&mut head)
            .expect("a message header before the read timeout");
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut body = vec![0u8; len - 4];
        self.stream.read_exact(&mut body).expect("the message body");
        (head[0], body)
    }

    /// Reads messages up to and including the first with `tag`.
    pub fn read_until(&mut self, tag: u8) -> Vec<(u8, Vec<u8>)> {
        let mut out = Vec::new();
        loop {
            let m = self.read();
            let done = m.0 == tag;
            out.push(m);
            if done {
                return out;
            }
        }
    }

    /// Sends raw bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// Sends a simple Query.
    pub fn query(&mut self, sql: &str) {
        self.send(&query(sql));
    }

    /// Runs `sql` as a simple query; the values of the first column, or the error.
    pub fn rows(&mut self, sql: &str) -> Result<Vec<String>, Fields> {
        self.query(sql);
        let mut rows = Vec::new();
        let mut error = None;
        for (tag, body) in self.read_until(b'Z') {
            match tag {
                b'D' => {
                    let len = i32::from_be_bytes(body[2..6].try_into().unwrap());
                    rows.push(if len < 0 {
                        String::new()
                    } else {
                        String::from_utf8_lossy(&body[6..6 + len as usize]).into_owned()
                    });
                }
                b'E' => error = Some(fields(&body)),
                _ => {}
            }
        }
        error.map_or(Ok(rows), Err)
    }

    /// The single value of `SHOW name` (or any one-value query).
    pub fn one(&mut self, sql: &str) -> String {
        let rows = self.rows(sql).unwrap_or_else(|e| panic!("{sql}: {e:?}"));
        rows.into_iter().next().expect("a row")
    }

    /// Sends Terminate and closes the socket, as libpq's PQfinish does.
    pub fn terminate(mut self) {
        let _ = self.stream.write_all(&raw_message(b'X', b""));
    }

    /// Closes the socket without a Terminate.
    pub fn close(self) {
        drop(self.stream);
    }
}

/// A simple Query message.
pub fn query(sql: &str) -> Vec<u8> {
    raw_message(b'Q', &cstr(sql))
}

/// Parse (unnamed) + Bind (unnamed, no parameters) + Execute (all rows), without Sync.
pub fn extended(sql: &str) -> Vec<u8> {
    let mut parse = cstr("");
    parse.extend(cstr(sql));
    parse.extend(0u16.to_be_bytes());
    let mut m = raw_message(b'P', &parse);
    m.extend(raw_message(b'B', &[0, 0, 0, 0, 0, 0, 0, 0]));
    m.extend(raw_message(b'E', &[0, 0, 0, 0, 0]));
    m
}

/// A Sync message.
pub fn sync() -> Vec<u8> {
    raw_message(b'S', b"")
}

/// A Flush message.
pub fn flush() -> Vec<u8> {
    raw_message(b'H', b"")
}

/// A CancelRequest for `key`, on a connection of its own.
pub fn cancel(port: u16, key: (i32, i32)) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("tcp connect");
    let mut m = 16u32.to_be_bytes().to_vec();
    m.extend(80_877_102u32.to_be_bytes());
    m.extend(key.0.to_be_bytes());
    m.extend(key.1.to_be_bytes());
    s.write_all(&m).expect("send cancel");
    let mut sink = [0u8; 1];
    let _ = s.read(&mut sink);
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}
