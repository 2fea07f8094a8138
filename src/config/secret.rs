//! `${env:NAME}`, `${file:/path}` and `${credential:NAME}` inside a string: resolved when
//! the configuration is loaded (so `validate` says when one does not resolve), and never
//! shown: a `Secret` prints as written, with the references, not their values.

use std::fmt;
use std::path::Path;

use toml::Spanned;

use super::Ctx;

/// A string with its secret references resolved.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    /// What is sent.
    value: String,
    /// What is shown: the string as written.
    written: String,
}

impl Secret {
    pub fn plain(s: &str) -> Secret {
        Secret {
            value: s.to_string(),
            written: s.to_string(),
        }
    }

    /// The same string as written, sent as `value` (e.g. a URL completed with a path).
    pub fn with_value(&self, value: String) -> Secret {
        Secret {
            value,
            written: self.written.clone(),
        }
    }

    /// The resolved value, for sending; never for a log or an error.
    pub fn expose(&self) -> &str {
        &self.value
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.written)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.written)
    }
}

/// Resolves every reference in `value`; each one that does not resolve is an error at
/// the value (naming the reference, never a secret).
pub(crate) fn resolve(ctx: &mut Ctx, value: &Spanned<String>) -> Option<Secret> {
    let written = value.get_ref();
    let mut out = String::new();
    let mut rest = written.as_str();
    let mut ok = true;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let Some(len) = rest[start..].find('}') else {
            ctx.error(value.span(), "a `${` is not closed by `}`");
            return None;
        };
        let reference = &rest[start + 2..start + len];
        match lookup(reference) {
            Ok(v) => out.push_str(&v),
            Err(why) => {
                ctx.error(
                    value.span(),
                    format!("`${{{reference}}}` does not resolve: {why}"),
                );
                ok = false;
            }
        }
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    ok.then(|| Secret {
        value: out,
        written: written.clone(),
    })
}

fn lookup(reference: &str) -> Result<String, String> {
    let (kind, name) = reference
        .split_once(':')
        .ok_or("write it as ${env:NAME}, ${file:/path} or ${credential:NAME}")?;
    match kind {
        "env" => {
            std::env::var(name).map_err(|_| format!("the environment variable {name} is not set"))
        }
        "file" => read_trimmed(Path::new(name)),
        "credential" => {
            let dir = std::env::var_os("CREDENTIALS_DIRECTORY")
                .ok_or("CREDENTIALS_DIRECTORY is not set (systemd sets it for LoadCredential=)")?;
            if name.contains('/') {
                return Err("a credential name has no `/`".into());
            }
            read_trimmed(&Path::new(&dir).join(name))
        }
        other => Err(format!("unknown kind `{other}` (env, file or credential)")),
    }
}

/// The largest secret file read: a token or a password, with room for a certificate.
const SECRET_MAX: u64 = 64 * 1024;

/// A secret file's content, without the trailing newline editors add.
/// A FIFO or device (`/dev/zero`) in its place is refused, and so is anything over 64 KiB.
fn read_trimmed(path: &Path) -> Result<String, String> {
    let text = crate::fsread::read_regular_text(path, SECRET_MAX).map_err(|e| match e {
        crate::fsread::ReadError::Io(e) => format!("cannot read {}: {}", path.display(), e.kind()),
        other => format!("cannot read {}: {other}", path.display()),
    })?;
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_kinds_and_missing_names_do_not_resolve() {
        assert!(lookup("nope").is_err());
        assert!(lookup("vault:x").is_err());
        assert!(lookup("env:HARK_TEST_SURELY_UNSET_VARIABLE").is_err());
        assert!(lookup("file:/nonexistent/hark/secret").is_err());
    }

    #[test]
    fn a_secret_shows_as_written() {
        let s = Secret {
            value: "hunter2".into(),
            written: "Bearer ${env:TOKEN}".into(),
        };
        assert_eq!(
            format!("{s} {s:?}"),
            "Bearer ${env:TOKEN} \"Bearer ${env:TOKEN}\""
        );
        assert_eq!(s.expose(), "hunter2");
    }
}
