//! The fields that describe a file as it is now: what a file event carries.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::event::{Map, Value};

/// `exists`, `size`, `mode`, `uid`, `gid`, `mtime` and, when asked, `sha256`, as the
/// path is now. A path that is gone has `exists = false` and none of the others.
pub fn describe_file(path: &Path, checksum: bool, fields: &mut Map<String, Value>) {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        fields.insert("exists".into(), Value::from(false));
        return;
    };
    fields.insert("exists".into(), Value::from(true));
    fields.insert("size".into(), Value::from(meta.len()));
    fields.insert(
        "mode".into(),
        Value::from(format!("{:04o}", meta.mode() & 0o7777)),
    );
    fields.insert("uid".into(), Value::from(meta.uid()));
    fields.insert("gid".into(), Value::from(meta.gid()));
    if let Ok(m) = meta.modified() {
        fields.insert("mtime".into(), Value::from(crate::event::rfc3339(m)));
    }
    if checksum && meta.is_file() {
        if let Some(h) = sha256_of(path) {
            fields.insert("sha256".into(), Value::from(h));
        }
    }
}

fn sha256_of(path: &Path) -> Option<String> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    // Swapped for a FIFO since it was looked at: open_regular refuses it without waiting.
    let mut f = crate::fsread::open_regular(path).ok()?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Some(
        hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    )
}
