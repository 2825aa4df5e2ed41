//! One initdb, many clusters.
//!
//! initdb takes a second or more; copying its result takes a few tens of milliseconds. So the
//! harness runs initdb once into a template directory and gives every cluster a `cp -a` copy of
//! it. The template is also cached across test runs in [`base_dir`]: it is built in a directory
//! of our own (`pgtide-pg-<pid>-template<n>`, swept if we die) and then renamed into place,
//! which is atomic, so parallel test processes either see a complete template or none — if two
//! build one at the same time, the loser throws its copy away.
//!
//! The template's name carries what would make an old one wrong: a format version bumped when
//! this file changes what it writes, the uid (root-built templates are owned by `postgres`), and
//! the initdb binary's mtime and size (another PostgreSQL build).

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::error::{HarnessError, Result};
use crate::paths::{base_dir, create_owned_dir, DIR_PREFIX};
use crate::pgbin::{give_to_pg_user, pg_bin, pg_command, run, run_as_pg_user, running_as_root};

/// Bump when the template's contents change (initdb flags, the include line).
const TEMPLATE_FORMAT: u32 = 1;

/// The file, inside each data directory, that holds the harness's settings for that cluster;
/// the template's `postgresql.conf` includes it as its last line.
pub(crate) const HARNESS_CONF: &str = "pgtide.conf";

/// The template's data directory, built on first use in this process (or found from an earlier
/// run). A failure is remembered, so a broken PostgreSQL install fails every test quickly with
/// the same message.
pub(crate) fn template_data_dir() -> Result<PathBuf> {
    static TEMPLATE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    TEMPLATE
        .get_or_init(|| find_or_build().map_err(|e| e.to_string()))
        .clone()
        .map(|root| root.join("data"))
        .map_err(HarnessError::Template)
}

/// Copies the template into `dest` (which must not exist yet) with owners and modes intact.
pub(crate) fn copy_template_to(dest: &Path) -> Result<()> {
    let template = template_data_dir()?;
    let mut cp = Command::new("cp");
    cp.arg("-a").arg(&template).arg(dest);
    run(&mut cp)?;
    Ok(())
}

fn template_name() -> Result<String> {
    let initdb = pg_bin("initdb");
    let meta = std::fs::metadata(&initdb)
        .map_err(|e| HarnessError::io(format!("looking for {}", initdb.display()), e))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    Ok(format!(
        "{DIR_PREFIX}template-v{TEMPLATE_FORMAT}-u{euid}-{}-{}",
        meta.mtime(),
        meta.size()
    ))
}

fn is_complete(root: &Path) -> bool {
    root.join("data/global/pg_control").is_file() && root.join("data/PG_VERSION").is_file()
}

fn find_or_build() -> Result<PathBuf> {
    let final_root = base_dir().join(template_name()?);
    if is_complete(&final_root) {
        return Ok(final_root);
    }
    let build_root = create_owned_dir("template")?;
    if let Err(e) = initdb_into(&build_root) {
        let _ = std::fs::remove_dir_all(&build_root);
        return Err(e);
    }
    match std::fs::rename(&build_root, &final_root) {
        Ok(()) => Ok(final_root),
        Err(e) => {
            let _ = std::fs::remove_dir_all(&build_root);
            if is_complete(&final_root) {
                Ok(final_root) // another process won the race
            } else {
                Err(HarnessError::io(
                    format!(
                        "moving the template into {} (delete it if it is broken)",
                        final_root.display()
                    ),
                    e,
                ))
            }
        }
    }
}

fn initdb_into(root: &Path) -> Result<()> {
    give_to_pg_user(root, false)?;
    let data = root.join("data");
    let mut initdb = pg_command("initdb");
    initdb
        .arg("-D")
        .arg(&data)
        .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C"])
        .args(["--no-sync", "--no-instructions"]);
    run(&mut run_as_pg_user(initdb)?)?;

    let conf_path = data.join("postgresql.conf");
    let mut conf = std::fs::OpenOptions::new()
        .append(true)
        .open(&conf_path)
        .map_err(|e| HarnessError::io(format!("opening {}", conf_path.display()), e))?;
    writeln!(
        conf,
        "\n# Added by pgtide_harness: per-cluster settings, written before each start.\ninclude '{HARNESS_CONF}'"
    )
    .map_err(|e| HarnessError::io(format!("writing {}", conf_path.display()), e))?;
    if running_as_root() {
        // Appending keeps the owner, but be explicit: the server must read everything.
        give_to_pg_user(&data, true)?;
    }
    Ok(())
}
