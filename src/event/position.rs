//! Where a stream (a log file, the journal) is read to, as events carry it and the store
//! keeps it.

use std::sync::Arc;

/// Where a stream is; made into bytes only for the last of a batch, when stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mark {
    /// The stream is gone: its key is removed.
    Forget,
    File(FilePosition),
    /// A journal's cursor.
    Text(Arc<str>),
}

impl Mark {
    /// As stored (`None`: remove the key): a file position as a JSON object, a cursor as
    /// a JSON string.
    pub fn to_bytes(&self) -> Option<Vec<u8>> {
        match self {
            Mark::Forget => None,
            Mark::File(p) => serde_json::to_vec(p).ok(),
            Mark::Text(t) => serde_json::to_vec(&**t).ok(),
        }
    }

    /// From what was stored; `None` for bytes that are neither.
    pub fn from_bytes(b: &[u8]) -> Option<Mark> {
        if let Ok(p) = serde_json::from_slice::<FilePosition>(b) {
            return Some(Mark::File(p));
        }
        serde_json::from_slice::<String>(b)
            .ok()
            .map(|t| Mark::Text(Arc::from(t)))
    }
}

/// Where a file is read to, as a log watch stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FilePosition {
    pub dev: u64,
    pub ino: u64,
    pub offset: u64,
    /// Hash and length of the file's first bytes (at most `HEAD`).
    pub head: (u64, u32),
}
