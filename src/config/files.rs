//! Which files make up the configuration, and whether they are safe to trust.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::diagnostic::ConfigError;

pub const DEFAULT_CONFIG_FILE: &str = "/etc/hark/hark.toml";
pub const DEFAULT_CONFIG_DIR: &str = "/etc/hark/rules.d";

/// The files to load, in order: each `-c` path in the order given, a directory's
/// `*.toml` files sorted by name. With no `-c`, the defaults, either of which may be absent.
pub fn config_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ConfigError> {
    let mut out = Vec::new();
    if paths.is_empty() {
        let file = Path::new(DEFAULT_CONFIG_FILE);
        if file.exists() {
            out.push(file.to_path_buf());
        }
        let dir = Path::new(DEFAULT_CONFIG_DIR);
        if dir.is_dir() {
            out.extend(toml_files_in(dir)?);
        }
        if out.is_empty() {
            return Err(ConfigError::in_file(
                file,
                format!("no configuration: neither {DEFAULT_CONFIG_FILE} nor {DEFAULT_CONFIG_DIR}/*.toml exists (name one with -c PATH)"),
            ));
        }
        return Ok(out);
    }
    for path in paths {
        let meta = std::fs::metadata(path)
            .map_err(|e| ConfigError::in_file(path, format!("cannot read: {e}")))?;
        if meta.is_dir() {
            out.extend(toml_files_in(path)?);
        } else {
            out.push(path.clone());
        }
    }
    Ok(out)
}

fn toml_files_in(dir: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    // A directory others can write to lets them add a rule that runs commands as root.
    check_permissions(dir)?;
    let entries = std::fs::read_dir(dir)
        .map_err(|e| ConfigError::in_file(dir, format!("cannot read directory: {e}")))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Refuses a file or directory that group or others can write, or that someone other
/// than root or the user running hark owns: its rules would run commands as that user.
pub fn check_permissions(path: &Path) -> Result<(), ConfigError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| ConfigError::in_file(path, format!("cannot read: {e}")))?;
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(ConfigError::in_file(
            path,
            format!(
                "refusing a config {} that group or others can write (mode {mode:04o}): \
                 its rules run commands as this user; fix it with `chmod go-w {}`",
                if meta.is_dir() { "directory" } else { "file" },
                path.display()
            ),
        ));
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if meta.uid() != 0 && meta.uid() != euid {
        return Err(ConfigError::in_file(
            path,
            format!(
                "refusing a config owned by uid {} (neither root nor the user running hark, uid {euid})",
                meta.uid()
            ),
        ));
    }
    Ok(())
}
