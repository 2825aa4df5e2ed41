//! Connection strings in the two forms clients take: libpq `key=value` (psql, tokio-postgres,
//! pgbench) and `postgres://` URLs. Values are quoted or percent-encoded, so passwords with
//! spaces, quotes or `@` work.

/// `host=… port=… user=… [password=…] dbname=…`, each value quoted when it needs to be.
pub fn conn_string(host: &str, port: u16, user: &str, password: Option<&str>, db: &str) -> String {
    let mut parts = vec![
        format!("host={}", conninfo_value(host)),
        format!("port={port}"),
        format!("user={}", conninfo_value(user)),
    ];
    if let Some(password) = password {
        parts.push(format!("password={}", conninfo_value(password)));
    }
    parts.push(format!("dbname={}", conninfo_value(db)));
    parts.join(" ")
}

/// `postgres://user[:password]@host:port/db` with user, password and db percent-encoded.
pub fn url(host: &str, port: u16, user: &str, password: Option<&str>, db: &str) -> String {
    let auth = match password {
        Some(p) => format!("{}:{}", percent_encode(user), percent_encode(p)),
        None => percent_encode(user),
    };
    format!("postgres://{auth}@{host}:{port}/{}", percent_encode(db))
}

/// A libpq conninfo value: bare if it is plain, else single-quoted with `\` and `'` escaped.
pub fn conninfo_value(value: &str) -> String {
    let plain = !value.is_empty()
        && !value
            .chars()
            .any(|c| c.is_whitespace() || c == '\'' || c == '\\' || c == '=');
    if plain {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_values_stay_bare_and_odd_ones_are_quoted() {
        assert_eq!(
            conn_string("127.0.0.1", 5432, "app", Some("secret"), "app"),
            "host=127.0.0.1 port=5432 user=app password=secret dbname=app"
        );
        assert_eq!(conninfo_value(""), "''");
        assert_eq!(conninfo_value(r"a b'c\d"), r"'a b\'c\\d'");
        assert_eq!(
            conn_string("h", 1, "u", None, "d"),
            "host=h port=1 user=u dbname=d"
        );
    }

    #[test]
    fn urls_percent_encode_credentials() {
        assert_eq!(
            url("127.0.0.1", 5432, "app", Some("p@ss word/1"), "my db"),
            "postgres://app:p%40ss%20word%2F1@127.0.0.1:5432/my%20db"
        );
    }
}
