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
    let mut files = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| ConfigError::in_file(dir, format!("cannot read directory: {e}")))?
            .path();
        if path.extension().is_none_or(|x| x != "toml") {
            continue;
        }
        // A `*.toml` that is not a regular file would be skipped without a word, and the
        // rules a person put there would silently not run: say so instead.
        match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => files.push(path),
            Ok(m) if m.is_dir() => {}
            Ok(m) => {
                return Err(ConfigError::in_file(
                    &path,
                    format!(
                        "not a regular file ({}): only regular *.toml files are loaded; remove or rename it",
                        crate::fsread::kind_name(&m.file_type())
                    ),
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let target = std::fs::read_link(&path)
                    .map(|t| t.display().to_string())
                    .unwrap_or_default();
                return Err(ConfigError::in_file(
                    &path,
                    format!("a symbolic link to {target:?}, which does not exist: remove it, or make what it names"),
                ));
            }
            Err(e) => return Err(ConfigError::in_file(&path, format!("cannot read: {e}"))),
        }
    }
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
