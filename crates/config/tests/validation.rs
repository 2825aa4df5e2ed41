//! Every validation error kind, all reported at once, with key paths and sources.
#![allow(clippy::result_large_err)] // figment::Jail closures return figment::Error

use figment::Jail;
use pgtide_config::{diff, needs_restart, Apply, ConfigError, Loader};

fn problems(jail: &mut Jail, toml: &str) -> Vec<String> {
    jail.create_file("bad.toml", toml).unwrap();
    match Loader::new().without_env().file("bad.toml").load() {
        Ok(_) => panic!("config should be invalid:\n{toml}"),
        Err(ConfigError::Invalid(p)) => p.iter().map(ToString::to_string).collect(),
        Err(other) => panic!("expected Invalid, got {other}"),
    }
}

fn has(list: &[String], needle: &str) -> bool {
    list.iter().any(|p| p.contains(needle))
}

#[test]
fn reports_every_problem_at_once() {
    Jail::expect_with(|jail| {
        let p = problems(
            jail,
            r#"
[pgtide]
listen = ["not-an-address"]
max_client_conn = 0
auth_type = "md5"
bogus_key = 1

[pool]
min_size = 30
max_size = 10
acquire_timeout = "0s"
connect_timeout = "soon"
mode = "sometimes"

[pool.adaptive]
shrink_utilization = 1.5

[databases.app]
port = 0
password = 42
max_size = "many"

[databases.sock]
host = "/var/run/postgresql"

[log]
level = "app=loud"
"#,
        );
        let all = p.join("\n");
        for needle in [
            "pgtide.listen: invalid socket address \"not-an-address\"",
            "pgtide.bogus_key",
            "pgtide.max_client_conn: must be > 0",
            "pgtide.auth_file: required",
            "pool.min_size: 30 is greater than max_size 10",
            "pool.acquire_timeout: must be greater than 0s",
            "pool.connect_timeout: invalid duration \"soon\"",
            "pool.mode",
            "pool.adaptive.shrink_utilization",
            "databases.app.port: must be 1-65535",
            "databases.app.password: invalid value (not shown: it is a secret)",
            "databases.app.max_size",
            "databases.sock.host: \"/var/run/postgresql\" is a Unix-socket directory",
            "log.level: invalid directive \"app=loud\"",
        ] {
            assert!(has(&p, needle), "missing {needle:?} in:\n{all}");
        }
        // each problem names where the value came from
        assert!(has(&p, "bad.toml"), "{all}");
        // the secret's value never appears
        assert!(!all.contains("42"), "{all}");
        Ok(())
    });
}

#[test]
fn unknown_keys_in_nested_tables_are_errors() {
    Jail::expect_with(|jail| {
        let p = problems(
            jail,
            "[pgtide]\nauth_type = \"trust\"\n[databases.app]\nhots = \"x\"\n[pool.adaptive]\nenabeld = true\n",
        );
        assert!(has(&p, "databases.app.hots"), "{p:?}");
        assert!(has(&p, "pool.adaptive.enabeld"), "{p:?}");
        Ok(())
    });
}

#[test]
fn missing_files_and_tls_requirements() {
    Jail::expect_with(|jail| {
        let p = problems(
            jail,
            r#"
[pgtide]
auth_file = "nope.toml"
[pgtide.tls]
mode = "require"
cert_file = "missing.pem"
[admin]
tokens_file = "missing-tokens.toml"
[databases.app.tls]
mode = "verify-full"
"#,
        );
        for needle in [
            "pgtide.auth_file: file",
            "pgtide.tls.key_file: required",
            "pgtide.tls.cert_file: file",
            "admin.tokens_file: file",
            "databases.app.tls.ca_file: required",
        ] {
            assert!(has(&p, needle), "missing {needle:?} in {p:#?}");
        }
        Ok(())
    });
}

#[test]
fn database_override_problems_are_reported_under_the_database() {
    Jail::expect_with(|jail| {
        let p = problems(
            jail,
            "[pgtide]\nauth_type = \"trust\"\n[databases.app]\nmin_size = 50\nmax_db_connections = 10\n",
        );
        assert!(
            has(&p, "databases.app.min_size: 50 is greater than max_size 20"),
            "{p:?}"
        );
        assert!(has(&p, "databases.app.max_db_connections"), "{p:?}");
        assert!(!has(&p, "pool.min_size"), "{p:?}");
        Ok(())
    });
}

#[test]
fn env_problems_name_the_variable() {
    Jail::expect_with(|jail| {
        jail.create_file("ok.toml", "[pgtide]\nauth_type = \"trust\"\n")?;
        jail.set_env("PGTIDE_POOL__MAX_SIZE", "lots");
        let err = Loader::new()
            .file("ok.toml")
            .load()
            .unwrap_err()
            .to_string();
        assert!(err.contains("pool.max_size"), "{err}");
        assert!(err.contains("PGTIDE_POOL__MAX_SIZE"), "{err}");
        Ok(())
    });
}

#[test]
fn syntax_errors_carry_line_and_column() {
    Jail::expect_with(|jail| {
        jail.create_file("broken.toml", "[pool]\nmax_size = = 3\n")?;
        let err = Loader::new().file("broken.toml").load().unwrap_err();
        assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("line 2"), "{text}");
        assert!(text.contains("column"), "{text}");
        let missing = Loader::new().file("absent.toml").load().unwrap_err();
        assert!(
            matches!(missing, ConfigError::Unreadable { .. }),
            "{missing}"
        );
        Ok(())
    });
}

#[test]
fn debug_output_never_shows_secrets() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "s.toml",
            "[pgtide]\nauth_type = \"trust\"\n[databases.app]\npassword = \"hunter2-secret\"\n",
        )?;
        let c = Loader::new().file("s.toml").load().unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(
            c.databases["app"].password.as_ref().unwrap().expose(),
            "hunter2-secret"
        );
        Ok(())
    });
}

#[test]
fn diff_separates_live_from_restart_changes() {
    let base = Loader::new()
        .without_env()
        .set_str("pgtide.auth_type", "\"trust\"")
        .set_str("databases.app.port", "5432")
        .load()
        .unwrap();
    assert!(diff(&base, &base).is_empty());

    let mut changed = base.clone();
    changed.pool.max_size = 99;
    changed.databases.get_mut("app").unwrap().password = Some(pgtide_config::Secret::new("x"));
    changed.log.level = "debug".into();
    let changes = diff(&base, &changed);
    let paths: Vec<_> = changes.iter().map(|c| (c.path.as_str(), c.apply)).collect();
    assert!(paths.contains(&("pool.max_size", Apply::Live)), "{paths:?}");
    assert!(
        paths.contains(&("databases.app.password", Apply::Live)),
        "{paths:?}"
    );
    assert!(paths.contains(&("log.level", Apply::Live)), "{paths:?}");
    assert!(!needs_restart(&changes));

    changed.pgtide.listen[0].set_port(7777);
    changed.databases.insert("other".into(), Default::default());
    let changes = diff(&base, &changed);
    assert!(needs_restart(&changes));
    assert!(changes
        .iter()
        .any(|c| c.path == "pgtide.listen" && c.apply == Apply::Restart));
    assert!(changes
        .iter()
        .any(|c| c.path == "databases.other" && c.apply == Apply::Live));
}
