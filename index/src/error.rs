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
    Tantivy(#[from] tantivy::TantivyError),
    /// The file system failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
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
