//! Errors of the index layer.

use std::path::PathBuf;

/// What can go wrong opening, writing or searching partitions.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// A partition directory could not be opened.
    #[error("cannot open partition at {path}: {reason}")]
    Open {
        /// The partition directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// tantivy failed.
    #[error("index error: {0}")]
    Tantivy(tantivy::TantivyError),
    /// The file system failed.
    #[error("i/o error: {0}")]
    Io(std::io::Error),
    /// A stored row could not be decoded; the partition is damaged.
    #[error("stored row is damaged: {0}")]
    Decode(#[from] prost::DecodeError),
    /// The bytes given as a batch's encoding are not the encoding of that batch's rows.
    #[error("the encoded batch does not match its rows")]
    BatchEncoding,
    /// A split file is damaged or is not a split.
    #[error("split {path} is damaged: {reason}")]
    Split {
        /// The split file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A partition that lives only in object storage could not be fetched.
    #[error("{0}")]
    Remote(String),
    /// The query is well formed but cannot be run (unknown field, bad value).
    #[error("{0}")]
    Query(#[from] crate::query::QueryError),
}

/// A ranged read of a split failing inside tantivy comes back as an i/o error; it is said as
/// what it is, object storage that cannot be read now.
impl From<std::io::Error> for IndexError {
    fn from(error: std::io::Error) -> Self {
        match remote_read_reason(&error) {
            Some(reason) => IndexError::Remote(reason),
            None => IndexError::Io(error),
        }
    }
}

impl From<tantivy::TantivyError> for IndexError {
    fn from(error: tantivy::TantivyError) -> Self {
        use tantivy::TantivyError;
        use tantivy::directory::error::OpenReadError;
        let io_error = match &error {
            TantivyError::IoError(e) => Some(e.as_ref()),
            TantivyError::OpenReadError(OpenReadError::IoError { io_error, .. }) => {
                Some(io_error.as_ref())
            }
            _ => None,
        };
        match io_error.and_then(remote_read_reason) {
            Some(reason) => IndexError::Remote(reason),
            None => IndexError::Tantivy(error),
        }
    }
}

/// Why a ranged read of a split failed (object storage away, a timeout).
#[derive(Debug)]
pub(crate) struct RemoteReadError(pub(crate) String);

impl std::fmt::Display for RemoteReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RemoteReadError {}

/// The reason of a failed ranged read, when `error` is one.
pub(crate) fn remote_read_reason(error: &std::io::Error) -> Option<String> {
    error
        .get_ref()?
        .downcast_ref::<RemoteReadError>()
        .map(|e| e.0.clone())
}
