//! The `storage` setting: where sealed partitions go, checked when the configuration loads.

/// Where splits are kept: the `storage` setting, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageUrl {
    url: String,
    kind: StorageKind,
}

/// The kind of store a [`StorageUrl`] names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageKind {
    S3,
    Gcs,
    Azure,
    /// A local directory (or a mounted file system); the path.
    File(std::path::PathBuf),
}

impl StorageUrl {
    /// The URL as given.
    pub fn as_str(&self) -> &str {
        &self.url
    }

    /// The kind of store, and for a directory its path.
    pub fn kind(&self) -> &StorageKind {
        &self.kind
    }

    /// Parses `s3://bucket[/prefix]`, `gs://bucket[/prefix]`, `az://container[/prefix]` or
    /// `file:///absolute/path`.
    pub fn parse(text: &str) -> Result<StorageUrl, String> {
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| format!("'{text}' is not a URL like s3://bucket/prefix"))?;
        let first = rest.split('/').next().unwrap_or_default();
        let kind = match scheme {
            "s3" | "gs" => {
                if first.is_empty() {
                    return Err(format!(
                        "'{text}' names no bucket ({scheme}://bucket/prefix)"
                    ));
                }
                if scheme == "s3" {
                    StorageKind::S3
                } else {
                    StorageKind::Gcs
                }
            }
            "az" => {
                if first.is_empty() || first.contains('@') {
                    return Err(format!(
                        "'{text}' names no container (az://container/prefix; the account \
                         comes from AZURE_STORAGE_ACCOUNT_NAME)"
                    ));
                }
                StorageKind::Azure
            }
            "file" => {
                if !rest.starts_with('/') {
                    return Err(format!(
                        "'{text}' needs an absolute path (file:///var/lib/weft-splits)"
                    ));
                }
                StorageKind::File(std::path::PathBuf::from(rest))
            }
            other => {
                return Err(format!(
                    "unknown storage scheme '{other}://'; use s3://bucket/prefix, \
                     gs://bucket/prefix, az://container/prefix or file:///path"
                ));
            }
        };
        Ok(StorageUrl {
            url: text.to_string(),
            kind,
        })
    }
}

impl std::fmt::Display for StorageUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)
    }
}
