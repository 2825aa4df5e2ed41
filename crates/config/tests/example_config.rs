//! `deploy/pgtide.example.toml` is the config users copy. These tests keep it honest: it loads,
//! it holds the defaults it claims to hold, it documents every key the config knows (so a new key
//! without documentation fails here), and the auth and tokens files it names are valid.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use figment::value::Value;
use pgtide_config::{
    AdaptiveSettings, Admin, AuthFile, AuthQuery, Config, DatabaseConfig, General, Loader, Logging,
    PoolMode, PoolSettings, Role, TokensFile, UserConfig,
};

const EXAMPLE: &str = "pgtide.example.toml";
const USERS: &str = "users.example.toml";
const TOKENS: &str = "admin-tokens.example.toml";

/// This package's directory, as cargo gives it to the running test: the compile-time value is
/// only a fallback, because a test binary reused from a shared target directory may have been
/// built from another checkout.
fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// A file in the workspace's `deploy/` directory.
fn deploy(name: &str) -> PathBuf {
    manifest_dir().join("../../deploy").join(name)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn load_example() -> Config {
    Loader::new()
        .without_env()
        .file(deploy(EXAMPLE))
        .load()
        .unwrap_or_else(|e| panic!("{EXAMPLE} does not load:\n{e}"))
}

#[test]
fn example_loads_without_errors() {
    load_example();
}

#[test]
fn example_keeps_the_defaults_except_its_examples() {
    let config = load_example();

    // What the example deliberately sets; everything else must be the built-in default, so the
    // file doubles as a list of defaults.
    let expected = Config {
        pgtide: General {
            auth_file: Some(deploy(USERS)),
            ..General::default()
        },
        admin: Admin {
            tokens_file: Some(deploy(TOKENS)),
            ..Admin::default()
        },
        pool: PoolSettings::default(),
        databases: BTreeMap::from([(
            "app".to_owned(),
            DatabaseConfig {
                dbname: Some("app".to_owned()),
                max_size: Some(40),
                ..DatabaseConfig::default()
            },
        )]),
        users: BTreeMap::from([("app".to_owned(), UserConfig::default())]),
        log: Logging::default(),
    };

    // Section by section first, for a readable failure.
    assert_eq!(config.pgtide, expected.pgtide, "[pgtide]");
    assert_eq!(config.admin, expected.admin, "[admin]");
    assert_eq!(config.pool, PoolSettings::default(), "[pool]");
    assert_eq!(config.log, Logging::default(), "[log]");
    assert_eq!(config.databases, expected.databases, "[databases]");
    assert_eq!(config.users, expected.users, "[users]");
    assert_eq!(config, expected);

    // The per-database override lands in the effective pool settings, and nothing else moves.
    let app = config.pool_settings("app", "app").unwrap();
    assert_eq!(
        app,
        PoolSettings {
            max_size: 40,
            ..PoolSettings::default()
        }
    );
    assert_eq!(app.mode, PoolMode::Transaction);
    assert_eq!(config.databases["app"].server_dbname("app"), "app");
}

/// (section, key) pairs: a key and the dotted table it lives in ("" for the root).
type Keys = BTreeSet<(String, String)>;

/// Every key of a serialized config; tables are keys too, and are descended into.
fn collect_keys(section: &str, value: &Value, out: &mut Keys) {
    if let Value::Dict(_, dict) = value {
        for (key, child) in dict {
            out.insert((section.to_owned(), key.clone()));
            let inner = if section.is_empty() {
                key.clone()
            } else {
                format!("{section}.{key}")
            };
            collect_keys(&inner, child, out);
        }
    }
}

/// A config in which every optional table is present, so that serializing it names every key
/// the config knows. Map entries are named `app`, as in the example.
fn config_with_every_key() -> Config {
    let mut config = Config::default();
    config.pgtide.auth_query = Some(AuthQuery {
        query: String::new(),
        user: String::new(),
        password: None,
    });
    // `databases.NAME.adaptive` is left unset: its keys are `pool.adaptive`'s, and the example
    // shows the table as a commented `[databases.app.adaptive]` header.
    config
        .databases
        .insert("app".to_owned(), DatabaseConfig::default());
    config.users.insert("app".to_owned(), UserConfig::default());
    config
}

/// The keys the example *mentions*, set or commented out: `key = …` lines, with or without a
/// leading `#`, under the nearest `[table]` header above them (also with or without `#`).
/// Tables count as mentioned through their headers.
fn documented_keys(text: &str) -> Keys {
    let mut out = Keys::new();
    let mut section = String::new();
    for line in text.lines() {
        let line = line.trim_start().trim_start_matches('#').trim_start();
        if let Some(rest) = line.strip_prefix('[') {
            let Some((name, after)) = rest.split_once(']') else {
                continue;
            };
            let after = after.trim_start();
            // `[x] in a sentence` is prose, not a header.
            if name.starts_with('[') || !(after.is_empty() || after.starts_with('#')) {
                continue;
            }
            section = name.trim().to_owned();
            // A header names its table and, implicitly, every table above it.
            let parts: Vec<&str> = section.split('.').collect();
            for i in 0..parts.len() {
                out.insert((parts[..i].join("."), parts[i].to_owned()));
            }
            continue;
        }
        let Some((key, _)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim();
        let is_key = !key.is_empty()
            && key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if is_key {
            out.insert((section.clone(), key.to_owned()));
        }
    }
    out
}

#[test]
fn example_documents_every_config_key() {
    let text = read(&deploy(EXAMPLE));
    let serialized = Value::serialize(config_with_every_key()).unwrap();
    let mut known = Keys::new();
    collect_keys("", &serialized, &mut known);
    assert!(
        known.contains(&("pool.adaptive".to_owned(), "tick".to_owned())),
        "the walk must reach nested tables: {known:?}"
    );

    let documented = documented_keys(&text);
    let missing: Vec<String> = known
        .difference(&documented)
        .map(|(section, key)| format!("[{section}] {key}"))
        .collect();
    assert!(
        missing.is_empty(),
        "{EXAMPLE} does not mention these keys (add each, set to its default or commented out, \
         with a comment saying why it exists):\n  {}",
        missing.join("\n  ")
    );

    // The parser above must agree with TOML about the keys that are set: otherwise a key could
    // be "documented" under the wrong table.
    let table: toml::Table = toml::from_str(&text).unwrap();
    let mut set = Keys::new();
    collect_toml_keys("", &table, &mut set);
    let misplaced: Vec<_> = set.difference(&documented).collect();
    assert!(misplaced.is_empty(), "key parser disagrees: {misplaced:?}");
}

fn collect_toml_keys(section: &str, table: &toml::Table, out: &mut Keys) {
    for (key, value) in table {
        out.insert((section.to_owned(), key.clone()));
        if let toml::Value::Table(inner) = value {
            let name = if section.is_empty() {
                key.clone()
            } else {
                format!("{section}.{key}")
            };
            collect_toml_keys(&name, inner, out);
        }
    }
}

#[test]
fn reference_documents_every_config_key() {
    let docs = read(&manifest_dir().join("../../docs/configuration.md"));
    let serialized = Value::serialize(config_with_every_key()).unwrap();
    let mut known = Keys::new();
    collect_keys("", &serialized, &mut known);
    let missing: Vec<String> = known
        .iter()
        .filter(|(section, _)| !section.is_empty() && section != "databases" && section != "users")
        .filter(|(_, key)| !docs.contains(&format!("`{key}`")))
        .map(|(section, key)| format!("{section}.{key}"))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/configuration.md has no entry for:\n  {}",
        missing.join("\n  ")
    );
    // Durations and the layering example keep the spelling users copy.
    for needle in [
        "PGTIDE_POOL__MAX_SIZE=40",
        "--set pool.max_size=40",
        "pgtide check-config",
    ] {
        assert!(
            docs.contains(needle),
            "docs/configuration.md lacks {needle:?}"
        );
    }
}

#[test]
fn example_auth_and_tokens_files_load() {
    let config = load_example();

    let auth = AuthFile::load(config.pgtide.auth_file.as_deref().unwrap())
        .unwrap_or_else(|e| panic!("{USERS}: {e}"));
    let names: Vec<&str> = auth.users.iter().map(|u| u.name.as_str()).collect();
    assert_eq!(names, ["app", "reporting", "legacy"]);
    // One user per secret form, each with only that form.
    let app = auth.user("app").unwrap();
    assert!(app.password.is_some() && app.scram_secret.is_none() && app.md5.is_none());
    let reporting = auth.user("reporting").unwrap();
    assert!(reporting.password.is_none() && reporting.md5.is_none());
    assert_scram_verifier(reporting.scram_secret.as_ref().unwrap().expose());
    let legacy = auth.user("legacy").unwrap();
    assert!(legacy.password.is_none() && legacy.scram_secret.is_none());
    assert!(legacy.md5.as_ref().unwrap().expose().starts_with("md5"));
    // Every `[users.NAME]` entry of the example is a user the auth file knows.
    for name in config.users.keys() {
        assert!(auth.user(name).is_some(), "[users.{name}] not in {USERS}");
    }

    let tokens = TokensFile::load(config.admin.tokens_file.as_deref().unwrap())
        .unwrap_or_else(|e| panic!("{TOKENS}: {e}"));
    let roles: BTreeSet<_> = tokens
        .tokens
        .iter()
        .map(|t| format!("{:?}", t.role))
        .collect();
    assert_eq!(
        roles,
        BTreeSet::from([
            format!("{:?}", Role::Viewer),
            format!("{:?}", Role::Operator)
        ]),
        "the example shows both roles"
    );
    for t in &tokens.tokens {
        assert!(
            t.token.expose().contains("EXAMPLE"),
            "token {:?} must be visibly an example to replace",
            t.name
        );
    }
}

/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` as PostgreSQL stores it: base64
/// throughout, both keys 32 bytes (SHA-256).
fn assert_scram_verifier(secret: &str) {
    let rest = secret.strip_prefix("SCRAM-SHA-256$").expect("prefix");
    let (iter_salt, keys) = rest.split_once('$').expect("'$' before the keys");
    let (iterations, salt) = iter_salt.split_once(':').expect("iterations:salt");
    let (stored, server) = keys.split_once(':').expect("StoredKey:ServerKey");
    assert!(iterations.parse::<u32>().unwrap() >= 4096, "{secret}");
    assert!(!base64_decode(salt).is_empty(), "salt: {secret}");
    assert_eq!(base64_decode(stored).len(), 32, "StoredKey: {secret}");
    assert_eq!(base64_decode(server).len(), 32, "ServerKey: {secret}");
}

/// Standard base64 with padding, strict enough for a test.
fn base64_decode(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    assert!(s.len() % 4 == 0, "base64 length {s:?}");
    let body = s.trim_end_matches('=');
    assert!(s.len() - body.len() <= 2, "base64 padding {s:?}");
    let mut bits = 0u32;
    let mut nbits = 0;
    let mut out = Vec::new();
    for c in body.bytes() {
        let v = ALPHABET
            .iter()
            .position(|&a| a == c)
            .unwrap_or_else(|| panic!("not base64: {s:?}"));
        bits = (bits << 6) | v as u32;
        nbits += 6;
        if nbits >= 8 {
            nbits -= 8;
            out.push((bits >> nbits) as u8);
        }
    }
    out
}

#[test]
fn adaptive_settings_in_the_example_are_the_defaults() {
    // `[databases.NAME.adaptive]` replaces `[pool.adaptive]` whole; the example leaves it unset,
    // so the app pools run with exactly `[pool.adaptive]`.
    let config = load_example();
    assert_eq!(config.databases["app"].adaptive, None);
    assert_eq!(
        config.pool_settings("app", "app").unwrap().adaptive,
        AdaptiveSettings::default()
    );
}
