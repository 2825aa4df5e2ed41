//! A client's startup settings are its session's defaults, through pgtide as on a direct
//! connection: the login reports what the server reports (canonical values, PostgreSQL's
//! parameter names), a bad setting refuses the login with the server's error, `RESET` and
//! `DISCARD ALL` return to the client's values in session mode, and a client that sets no
//! application_name sees none. Each case compares pgtide with the same login made directly.

mod common;

use common::raw::Raw;
use common::*;
use pgtide_harness::{Auth, Cluster, Pgtide};

fn setup(mode: &str) -> (Cluster, Pgtide) {
    let cluster = app_cluster(Auth::Trust);
    let p = pgtide_with(&cluster, &[("pool.mode", mode), ("pool.max_size", "3")]);
    (cluster, p)
}

fn with_app<'a>(settings: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut params = vec![("user", USER), ("database", DB)];
    params.extend_from_slice(settings);
    params
}

const MODES: [&str; 2] = ["transaction", "session"];

#[test]
fn the_login_reports_what_the_server_reports() {
    for mode in MODES {
        let (cluster, p) = setup(mode);
        for settings in [
            &[][..],
            &[
                ("client_encoding", "euc-jp"),
                ("datestyle", "iso"),
                ("timezone", "utc"),
            ][..],
            &[(
                "options",
                "-c DateStyle=German -c intervalstyle=sql_standard",
            )][..],
            &[
                ("application_name", "reporter"),
                ("TimeZone", "Europe/Paris"),
            ][..],
        ] {
            let params = with_app(settings);
            let direct = Raw::login(cluster.port(), &params).expect("direct login");
            // Twice: the second login is answered from pgtide's cache of validated settings.
            for attempt in 0..2 {
                let through = Raw::login(p.port(), &params).expect("login through pgtide");
                assert_eq!(
                    through.params, direct.params,
                    "{mode} mode, {settings:?}, login {attempt}: ParameterStatus differs"
                );
                through.terminate();
            }
            direct.terminate();
        }
    }
}

#[test]
fn a_client_without_application_name_sees_none() {
    for mode in MODES {
        let (cluster, p) = setup(mode);
        let mut c = Raw::login(p.port(), &with_app(&[])).unwrap();
        assert_eq!(c.params["application_name"], "");
        assert_eq!(c.one("show application_name"), "");
        let mut d = Raw::login(cluster.port(), &with_app(&[])).unwrap();
        assert_eq!(d.one("show application_name"), "");
        c.terminate();
        d.terminate();
    }
}

#[test]
fn a_bad_startup_setting_refuses_the_login_as_the_server_does() {
    for mode in MODES {
        let (cluster, p) = setup(mode);
        for settings in [
            &[("options", "-c search_path=foo -c work_mem=bogus")][..],
            &[("no_such_setting", "1")][..],
            &[("datestyle", "yesterday")][..],
            &[("options", "-c server_version=1")][..],
        ] {
            let params = with_app(settings);
            let direct = Raw::login(cluster.port(), &params)
                .err()
                .expect("refused directly");
            let through = Raw::login(p.port(), &params)
                .err()
                .unwrap_or_else(|| panic!("{mode} mode, {settings:?}: login accepted"));
            assert_eq!(through[&'S'], "FATAL", "{mode}, {settings:?}");
            assert_eq!(through[&'C'], direct[&'C'], "{mode}, {settings:?}");
            assert_eq!(through[&'M'], direct[&'M'], "{mode}, {settings:?}");
        }
        // A good setting beside nothing bad is applied, on every server the client lands on.
        let good = with_app(&[("options", "-c search_path=foo,public")]);
        let mut direct = Raw::login(cluster.port(), &good).expect("direct login");
        let expected = direct.one("show search_path");
        assert_eq!(expected, "foo,public");
        direct.terminate();
        let mut c = Raw::login(p.port(), &good).expect("login");
        let mut others: Vec<Raw> = (0..2)
            .map(|_| Raw::login(p.port(), &with_app(&[])).unwrap())
            .collect();
        for o in &mut others {
            o.rows("begin").unwrap();
        }
        assert_eq!(c.one("show search_path"), expected);
        for o in &mut others {
            assert_eq!(o.one("show search_path"), "\"$user\", public");
            o.rows("commit").unwrap();
        }
        assert_eq!(c.one("show search_path"), expected);
    }
}

#[test]
fn reset_returns_to_the_client_startup_values_in_session_mode() {
    let (cluster, p) = setup("session");
    let settings = [
        ("datestyle", "Postgres, MDY"),
        ("options", "-c timezone=PST8PDT -c search_path=foo"),
    ];
    for target in [cluster.port(), p.port()] {
        let mut c = Raw::login(target, &with_app(&settings)).unwrap();
        let via = if target == p.port() {
            "pgtide"
        } else {
            "direct"
        };
        c.rows("set datestyle = ISO").unwrap();
        c.rows("set timezone = 'UTC'").unwrap();
        c.rows("set search_path = bar").unwrap();
        c.rows("reset datestyle").unwrap();
        assert_eq!(c.one("show datestyle"), "Postgres, MDY", "{via}: RESET");
        c.rows("reset all").unwrap();
        assert_eq!(c.one("show timezone"), "PST8PDT", "{via}: RESET ALL");
        assert_eq!(c.one("show search_path"), "foo", "{via}: RESET ALL");
        c.rows("set datestyle = ISO").unwrap();
        c.rows("discard all").unwrap();
        assert_eq!(
            c.one("show datestyle"),
            "Postgres, MDY",
            "{via}: DISCARD ALL"
        );
        assert_eq!(
            c.one("select '2024-03-01 12:00'::timestamptz::text"),
            "Fri Mar 01 12:00:00 2024 PST",
            "{via}"
        );
        c.terminate();
    }
    // Clients with other settings (or none) never get that server's defaults.
    let mut plain = Raw::login(p.port(), &with_app(&[])).unwrap();
    plain.rows("reset all").unwrap();
    assert_eq!(plain.one("show datestyle"), "ISO, MDY");
    let mut german = Raw::login(p.port(), &with_app(&[("datestyle", "German")])).unwrap();
    german.rows("reset datestyle").unwrap();
    assert_eq!(german.one("show datestyle"), "German, DMY");
    assert_eq!(german.one("select date '2024-03-01'"), "01.03.2024");
    // The first client's server, now idle, serves its settings again.
    let mut again = Raw::login(p.port(), &with_app(&settings)).unwrap();
    again.rows("reset all").unwrap();
    assert_eq!(again.one("show datestyle"), "Postgres, MDY");
}

/// The defect as users met it: with `PGDATESTYLE=German` psycopg (libpq underneath) picks its
/// date parser from the DateStyle the login reports; through pgtide it must read the same
/// values as directly, in both modes (and, in session mode, RESET ALL back to German).
#[test]
fn psycopg_with_pgdatestyle_german_reads_dates_as_directly() {
    use common::drivers::{driver_script, text};
    for mode in MODES {
        let (cluster, p) = setup(mode);
        let run = |port: u16| {
            let dsn = format!("postgresql://{USER}@127.0.0.1:{port}/{DB}");
            let out = driver_script("psycopg_dates.py")
                .arg(dsn)
                .args((mode == "session").then_some("reset"))
                .env("PGDATESTYLE", "German")
                .env("PGTZ", "Europe/Berlin")
                .output()
                .expect("psycopg_dates.py runs");
            assert!(out.status.success(), "{mode} mode:\n{}", text(&out));
            String::from_utf8_lossy(&out.stdout).trim().to_owned()
        };
        let direct = run(cluster.port());
        assert!(direct.contains("2024-03-01"), "{direct}");
        assert_eq!(run(p.port()), direct, "{mode} mode");
    }
}
