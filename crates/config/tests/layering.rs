//! The layering order: defaults < file < environment < command line, proven key by key.
#![allow(clippy::result_large_err)] // figment::Jail closures return figment::Error

use std::time::Duration;

use figment::Jail;
use pgtide_config::{Loader, PoolMode};

const FILE: &str = r#"
[pgtide]
auth_type = "trust"

[pool]
max_size = 10
acquire_timeout = "2s"
mode = "session"

[databases.app]
host = "127.0.0.1"
port = 5432
max_size = 40
"#;

#[test]
fn file_overrides_defaults() {
    Jail::expect_with(|jail| {
        jail.create_file("pgtide.toml", FILE)?;
        let c = Loader::new().file("pgtide.toml").load().unwrap();
        assert_eq!(c.pool.max_size, 10);
        assert_eq!(c.pool.mode, PoolMode::Session);
        assert_eq!(c.pool.acquire_timeout.get(), Duration::from_secs(2));
        // untouched keys keep their defaults
        assert_eq!(c.pool.connect_timeout.get(), Duration::from_secs(5));
        assert_eq!(c.pgtide.max_client_conn, 10_000);
        Ok(())
    });
}

#[test]
fn env_overrides_file_and_flag_overrides_env() {
    Jail::expect_with(|jail| {
        jail.create_file("pgtide.toml", FILE)?;
        jail.set_env("PGTIDE_POOL__MAX_SIZE", "30");
        jail.set_env("PGTIDE_POOL__ACQUIRE_TIMEOUT", "750ms");
        jail.set_env("PGTIDE_DATABASES__APP__MAX_SIZE", "50");
        // PGTIDE_CONFIG names the file for the daemon; it is not a config key.
        jail.set_env("PGTIDE_CONFIG", "pgtide.toml");

        let env_only = Loader::new().file("pgtide.toml").load().unwrap();
        assert_eq!(env_only.pool.max_size, 30, "env beats file");
        assert_eq!(
            env_only.pool.acquire_timeout.get(),
            Duration::from_millis(750)
        );
        assert_eq!(env_only.databases["app"].max_size, Some(50));

        let with_flag = Loader::new()
            .file("pgtide.toml")
            .set_str("pool.max_size", "35")
            .set_str("pool.acquire_timeout", "1s")
            .load()
            .unwrap();
        assert_eq!(with_flag.pool.max_size, 35, "flag beats env");
        assert_eq!(with_flag.pool.acquire_timeout.get(), Duration::from_secs(1));
        assert_eq!(with_flag.databases["app"].max_size, Some(50), "env kept");
        assert_eq!(with_flag.pool.mode, PoolMode::Session, "file kept");
        Ok(())
    });
}

#[test]
fn per_database_overrides_and_user_mode() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "pgtide.toml",
            &format!("{FILE}\n[users.reporting]\nmode = \"statement\"\n"),
        )?;
        let c = Loader::new()
            .without_env()
            .file("pgtide.toml")
            .load()
            .unwrap();
        let app = c.pool_settings("app", "someone").unwrap();
        assert_eq!(app.max_size, 40, "database override");
        assert_eq!(
            app.acquire_timeout.get(),
            Duration::from_secs(2),
            "inherited"
        );
        assert_eq!(c.pool_mode("app", "reporting"), Some(PoolMode::Statement));
        assert!(c.pool_settings("nope", "someone").is_none());
        Ok(())
    });
}

#[test]
fn listen_accepts_one_string_or_a_list_from_any_layer() {
    Jail::expect_with(|jail| {
        jail.create_file(
            "pgtide.toml",
            "[pgtide]\nauth_type = \"trust\"\nlisten = \"127.0.0.1:7000\"\n",
        )?;
        let c = Loader::new().file("pgtide.toml").load().unwrap();
        assert_eq!(c.pgtide.listen.len(), 1);
        jail.set_env(
            "PGTIDE_PGTIDE__LISTEN",
            "[\"127.0.0.1:7001\", \"127.0.0.2:7002\"]",
        );
        let c = Loader::new().file("pgtide.toml").load().unwrap();
        assert_eq!(c.pgtide.listen.len(), 2);
        let c = Loader::new()
            .file("pgtide.toml")
            .set_str("pgtide.listen", "127.0.0.1:7003")
            .load()
            .unwrap();
        assert_eq!(c.pgtide.listen[0].port(), 7003);
        Ok(())
    });
}

#[test]
fn relative_paths_resolve_against_the_config_file() {
    Jail::expect_with(|jail| {
        std::fs::create_dir("etc").unwrap();
        jail.create_file(
            "etc/users.toml",
            "[[users]]\nname = \"a\"\npassword = \"b\"\n",
        )?;
        jail.create_file("etc/pgtide.toml", "[pgtide]\nauth_file = \"users.toml\"\n")?;
        let c = Loader::new().file("etc/pgtide.toml").load().unwrap();
        assert!(c.pgtide.auth_file.unwrap().ends_with("etc/users.toml"));
        Ok(())
    });
}
