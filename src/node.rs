//! This node's name: given (`node_id`), or made up once and kept in the data directory, so
//! that it survives restarts. The splits a node publishes carry it; at start a node takes in
//! only its own, so several nodes can share one metastore and one bucket.

use std::io::Write;
use std::path::Path;

/// What a node does in a cluster (`role`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Role {
    /// Ingests and answers queries over its own data: one node on its own.
    #[default]
    All,
    /// Ingests (OTLP in, WAL, partitions, seal, upload, publish), and answers queries over
    /// its own data.
    Ingest,
    /// Takes no OTLP; answers queries over the splits every node published.
    Search,
}

impl Role {
    /// The role named `name` (`all`, `ingest` or `search`).
    pub fn parse(name: &str) -> Result<Role, String> {
        match name {
            "all" => Ok(Role::All),
            "ingest" => Ok(Role::Ingest),
            "search" => Ok(Role::Search),
            other => Err(format!(
                "'{other}' is not a role: use all, ingest or search"
            )),
        }
    }

    /// Its name, as `parse` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Role::All => "all",
            Role::Ingest => "ingest",
            Role::Search => "search",
        }
    }

    /// Whether it takes OTLP exports.
    pub fn ingests(self) -> bool {
        self != Role::Search
    }
}

/// The file in the data directory that keeps a made-up name.
const FILE_NAME: &str = "node-id";

/// `id` if it is a usable name: 1 to 64 letters, digits, `.`, `_` or `-`.
pub fn check(id: &str) -> Result<String, String> {
    let fine = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if fine {
        Ok(id.to_string())
    } else {
        Err(format!(
            "'{id}' is not a node name: use 1 to 64 letters, digits, '.', '_' or '-'"
        ))
    }
}

/// The name `configured`, or the one kept in `data_dir`, made up and written (fsynced) the
/// first time.
pub fn resolve(data_dir: &Path, configured: Option<&str>) -> anyhow::Result<String> {
    use anyhow::Context;
    if let Some(id) = configured {
        return Ok(id.to_string());
    }
    let path = data_dir.join(FILE_NAME);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            return check(text.trim())
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("{} is damaged", path.display()));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    let id = format!("node-{:08x}", rand::random::<u32>());
    let tmp = data_dir.join(format!("{FILE_NAME}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(id.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(data_dir)?.sync_all()
    };
    write().with_context(|| format!("cannot write {}", path.display()))?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_a_made_up_one_is_kept() {
        assert!(check("ingest-1.eu_west").is_ok());
        for bad in ["", "a/b", "a b", &"x".repeat(65)] {
            assert!(check(bad).is_err(), "{bad:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        let made = resolve(dir.path(), None).unwrap();
        assert!(check(&made).is_ok());
        assert_eq!(resolve(dir.path(), None).unwrap(), made, "kept");
        assert_eq!(resolve(dir.path(), Some("given")).unwrap(), "given");
        std::fs::write(dir.path().join(FILE_NAME), "a/b").unwrap();
        assert!(
            resolve(dir.path(), None).is_err(),
            "a damaged file is refused"
        );
    }
}
