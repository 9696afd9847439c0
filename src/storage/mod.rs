//! Object storage for sealed partitions (splits), and what is known about them.
//!
//! - this file: [`StorageUrl`] (the `storage` setting) and [`ObjectStorage`], which puts, gets
//!   and deletes split files through the `object_store` crate, and fetches splits for the index
//!   (`SplitFetcher`).
//! - the list of splits and their state lives in the metastore (`crate::metastore`).
//! - `publisher`: the task that packs sealed partitions, uploads them, publishes them, and
//!   deletes what retention or a newer split replaced.
//! - `follower`: a search node's task that keeps its index's remote partitions the splits
//!   every node published.
//!
//! What an acknowledgement promises does not change: a row is acknowledged once it is in the
//! local WAL and fsynced. With storage, the WAL entries behind a partition are kept until its
//! split is published, so the row exists on the local disk until it is in object storage.

pub mod follower;
pub mod publisher;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use tokio::io::AsyncWriteExt;

use crate::config::StorageKind;
pub use crate::config::StorageUrl;

/// Largest split sent in one PUT; larger ones go in parts of this size.
const PART_BYTES: usize = 8 << 20;
/// Longest one download of a split may take before the query asking for it gives up.
const FETCH_TIMEOUT: Duration = Duration::from_secs(120);

/// Split files in object storage, under `splits/` of the configured prefix.
#[derive(Clone, Debug)]
pub struct ObjectStorage {
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    url: StorageUrl,
}

impl ObjectStorage {
    /// Connects to the storage `url` names. Each service takes its endpoint, region and
    /// credentials from its standard variables, given in `env`: `AWS_*` for S3
    /// (`AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID`, …), `GOOGLE_*` for GCS
    /// (`GOOGLE_SERVICE_ACCOUNT`, …), `AZURE_*` for Azure Blob (`AZURE_STORAGE_ACCOUNT_NAME`,
    /// `AZURE_STORAGE_ACCOUNT_KEY`, …). Nothing is sent yet: an unreachable store shows up as
    /// failing uploads, not as a failed start.
    pub fn open(url: &StorageUrl, env: &[(String, String)]) -> Result<ObjectStorage, String> {
        // object_store's HTTP client brings no crypto provider of its own; weft uses ring.
        let _ = rustls::crypto::ring::default_provider().install_default();
        // weft retries a failed upload itself, with its own backoff, and a query should not
        // wait minutes on a store that is away: a few quick retries only.
        let retry = object_store::RetryConfig {
            max_retries: 3,
            retry_timeout: Duration::from_secs(30),
            ..Default::default()
        };
        // The same names each builder's `from_env` reads, from weft's own view of the
        // environment; variables a builder does not know (AWS_PROFILE…) are skipped.
        fn settings<K: std::str::FromStr>(
            env: &[(String, String)],
            prefix: &str,
        ) -> impl Iterator<Item = (K, String)> {
            env.iter()
                .filter(move |(key, _)| key.starts_with(prefix))
                .filter_map(|(key, value)| {
                    let key = key.to_ascii_lowercase().parse::<K>().ok()?;
                    Some((key, value.clone()))
                })
        }
        let fail = |e: object_store::Error| format!("storage {url}: {e}");
        let rest = url.as_str().split_once("://").map_or("", |(_, rest)| rest);
        let prefix = ObjectPath::from(rest.split_once('/').map(|(_, p)| p).unwrap_or_default());
        // The three cloud builders share no trait, but the same four calls: settings, retry,
        // URL, build.
        macro_rules! cloud_store {
            ($builder:ty, $prefix:literal) => {{
                let mut builder = <$builder>::new();
                for (key, value) in settings(env, $prefix) {
                    builder = builder.with_config(key, value);
                }
                let store = builder
                    .with_retry(retry)
                    .with_url(url.as_str().to_string())
                    .build()
                    .map_err(fail)?;
                (Arc::new(store) as Arc<dyn ObjectStore>, prefix)
            }};
        }
        let (store, prefix): (Arc<dyn ObjectStore>, ObjectPath) = match url.kind() {
            StorageKind::S3 => cloud_store!(object_store::aws::AmazonS3Builder, "AWS_"),
            StorageKind::Gcs => {
                cloud_store!(object_store::gcp::GoogleCloudStorageBuilder, "GOOGLE_")
            }
            StorageKind::Azure => {
                cloud_store!(object_store::azure::MicrosoftAzureBuilder, "AZURE_")
            }
            StorageKind::File(path) => {
                std::fs::create_dir_all(path)
                    .map_err(|e| format!("storage {url}: cannot create {}: {e}", path.display()))?;
                let store = object_store::local::LocalFileSystem::new_with_prefix(path)
                    .map_err(|e| format!("storage {url}: {e}"))?;
                (Arc::new(store), ObjectPath::default())
            }
        };
        Ok(ObjectStorage {
            store,
            prefix,
            url: url.clone(),
        })
    }

    /// The URL it was opened from.
    pub fn url(&self) -> &StorageUrl {
        &self.url
    }

    fn split_path(&self, id: &str) -> ObjectPath {
        self.prefix
            .clone()
            .join("splits")
            .join(format!("{id}.split"))
    }

    /// Uploads the split file at `file` as split `id`; large files go in parts.
    pub async fn put_split(&self, id: &str, file: &Path) -> Result<(), String> {
        let location = self.split_path(id);
        let size = tokio::fs::metadata(file)
            .await
            .map_err(|e| format!("reading {}: {e}", file.display()))?
            .len();
        if size <= PART_BYTES as u64 {
            let bytes = tokio::fs::read(file)
                .await
                .map_err(|e| format!("reading {}: {e}", file.display()))?;
            self.store
                .put(&location, bytes.into())
                .await
                .map_err(|e| e.to_string())?;
            return Ok(());
        }
        let upload = self
            .store
            .put_multipart(&location)
            .await
            .map_err(|e| e.to_string())?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let mut source = tokio::fs::File::open(file)
            .await
            .map_err(|e| format!("reading {}: {e}", file.display()))?;
        let mut buf = vec![0u8; PART_BYTES];
        loop {
            use tokio::io::AsyncReadExt;
            let n = match source.read(&mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(format!("reading {}: {e}", file.display()));
                }
            };
            if n == 0 {
                break;
            }
            if let Err(e) = writer.wait_for_capacity(4).await {
                return Err(e.to_string());
            }
            writer.write(&buf[..n]);
        }
        writer.finish().await.map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Downloads split `id` into the file `dest`, fsynced.
    pub async fn get_split(&self, id: &str, dest: &Path) -> Result<u64, String> {
        let result = self
            .store
            .get(&self.split_path(id))
            .await
            .map_err(|e| e.to_string())?;
        let mut out = tokio::fs::File::create(dest)
            .await
            .map_err(|e| format!("writing {}: {e}", dest.display()))?;
        let mut stream = result.into_stream();
        let mut bytes = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| e.to_string())?;
            bytes += chunk.len() as u64;
            out.write_all(&chunk)
                .await
                .map_err(|e| format!("writing {}: {e}", dest.display()))?;
        }
        out.sync_all()
            .await
            .map_err(|e| format!("writing {}: {e}", dest.display()))?;
        Ok(bytes)
    }

    /// Bytes `range` of split `id`.
    pub async fn read_split_range(
        &self,
        id: &str,
        range: std::ops::Range<u64>,
    ) -> Result<Vec<u8>, String> {
        self.store
            .get_range(&self.split_path(id), range)
            .await
            .map(|bytes| bytes.to_vec())
            .map_err(|e| e.to_string())
    }

    /// The last `len` bytes of split `id` (all of it when shorter), and its size: one request,
    /// or two where the service takes no suffix range (Azure Blob): its size, then the range.
    pub async fn read_split_tail(&self, id: &str, len: u64) -> Result<(Vec<u8>, u64), String> {
        let location = self.split_path(id);
        if *self.url.kind() != StorageKind::Azure {
            let options = object_store::GetOptions::new()
                .with_range(Some(object_store::GetRange::Suffix(len)));
            let result = self
                .store
                .get_opts(&location, options)
                .await
                .map_err(|e| e.to_string())?;
            let size = result.meta.size;
            let bytes = result.bytes().await.map_err(|e| e.to_string())?;
            return Ok((bytes.to_vec(), size));
        }
        let size = self
            .store
            .head(&location)
            .await
            .map_err(|e| e.to_string())?
            .size;
        let bytes = self
            .store
            .get_range(&location, size.saturating_sub(len)..size)
            .await
            .map_err(|e| e.to_string())?;
        Ok((bytes.to_vec(), size))
    }

    /// Deletes split `id`; one already gone counts as deleted.
    pub async fn delete_split(&self, id: &str) -> Result<(), String> {
        match self.store.delete(&self.split_path(id)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }
}

/// Fetches splits for the index, which is synchronous, from whatever thread asks.
pub struct Fetcher {
    storage: ObjectStorage,
    runtime: tokio::runtime::Handle,
    metrics: Arc<crate::metrics::Metrics>,
}

impl Fetcher {
    /// A fetcher running its downloads on `runtime`.
    pub fn new(
        storage: ObjectStorage,
        runtime: tokio::runtime::Handle,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Fetcher {
        Fetcher {
            storage,
            runtime,
            metrics,
        }
    }
}

impl Fetcher {
    /// Runs `request` on the runtime and waits for it here, within [`FETCH_TIMEOUT`], counting
    /// its bytes as `counters` says. The caller is a query's blocking thread or the indexer;
    /// a thread of its own keeps `block_on` off any runtime thread.
    fn wait<T, F>(
        &self,
        request: F,
        size: impl Fn(&T) -> u64,
        counters: (&AtomicU64, &AtomicU64),
    ) -> Result<T, String>
    where
        T: Send + 'static,
        F: std::future::Future<Output = Result<T, String>> + Send + 'static,
    {
        let runtime = self.runtime.clone();
        let outcome = std::thread::spawn(move || {
            runtime.block_on(async move {
                tokio::time::timeout(FETCH_TIMEOUT, request)
                    .await
                    .unwrap_or_else(|_| Err(format!("no answer within {FETCH_TIMEOUT:?}")))
            })
        })
        .join()
        .unwrap_or_else(|_| Err("the object storage thread failed".to_string()));
        let storage = &self.metrics.storage;
        match &outcome {
            Ok(value) => {
                counters.0.fetch_add(1, Ordering::Relaxed);
                counters.1.fetch_add(size(value), Ordering::Relaxed);
            }
            Err(_) => {
                storage.fetch_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        outcome
    }
}

impl weft_index::store::SplitFetcher for Fetcher {
    fn fetch(&self, id: &str, dest: &Path) -> Result<(), String> {
        let storage = self.storage.clone();
        let (id, dest) = (id.to_string(), dest.to_path_buf());
        let st = &self.metrics.storage;
        self.wait(
            async move { storage.get_split(&id, &dest).await },
            |bytes| *bytes,
            (&st.fetches, &st.fetched_bytes),
        )
        .map(|_| ())
    }

    fn read_range(&self, id: &str, range: std::ops::Range<u64>) -> Result<Vec<u8>, String> {
        let storage = self.storage.clone();
        let st = &self.metrics.storage;
        let started = std::time::Instant::now();
        let (split, start) = (id.to_string(), range.start);
        let read = self.wait(
            async move { storage.read_split_range(&split, range).await },
            |bytes| bytes.len() as u64,
            (&st.reads, &st.read_bytes),
        );
        if let Ok(bytes) = &read {
            tracing::debug!(
                split = id,
                start,
                bytes = bytes.len(),
                ms = started.elapsed().as_secs_f64() * 1e3,
                "split range read"
            );
        }
        read
    }

    fn read_tail(&self, id: &str, len: u64) -> Result<(Vec<u8>, u64), String> {
        let storage = self.storage.clone();
        let id = id.to_string();
        let st = &self.metrics.storage;
        self.wait(
            async move { storage.read_split_tail(&id, len).await },
            |(bytes, _)| bytes.len() as u64,
            (&st.reads, &st.read_bytes),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_urls_are_checked() {
        assert!(StorageUrl::parse("s3://bucket/weft").is_ok());
        assert!(StorageUrl::parse("s3://bucket").is_ok());
        assert!(StorageUrl::parse("file:///var/lib/weft").is_ok());
        assert!(StorageUrl::parse("gs://bucket/weft").is_ok());
        assert!(StorageUrl::parse("az://container/weft").is_ok());
        for (bad, says) in [
            ("bucket/weft", "not a URL"),
            ("s3:///weft", "no bucket"),
            ("gs:///weft", "no bucket"),
            ("az:///weft", "no container"),
            ("file://relative/path", "absolute path"),
            ("ftp://host/x", "unknown storage scheme"),
        ] {
            let err = StorageUrl::parse(bad).expect_err(bad);
            assert!(err.contains(says), "{bad}: {err}");
        }
    }

    /// Each service's client is configured from its own variables; a variable the client
    /// does not know is left out, and one it refuses fails the start with its name.
    #[test]
    fn clients_take_their_settings_from_their_variables() {
        let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let azure = StorageUrl::parse("az://splits/weft").unwrap();
        let opened = ObjectStorage::open(
            &azure,
            &env(&[
                ("AZURE_STORAGE_ACCOUNT_NAME", "devstoreaccount1"),
                ("AZURE_STORAGE_USE_EMULATOR", "true"),
                ("AZURE_SOMETHING_NEW", "ignored"),
            ]),
        )
        .unwrap();
        assert_eq!(opened.split_path("x").as_ref(), "weft/splits/x.split");
        let err = ObjectStorage::open(&azure, &[]).unwrap_err();
        assert!(err.contains("az://splits/weft"), "{err}");
        let gcs = StorageUrl::parse("gs://bucket/a/b").unwrap();
        let err = ObjectStorage::open(&gcs, &env(&[("GOOGLE_SERVICE_ACCOUNT_KEY", "not a key")]))
            .unwrap_err();
        assert!(err.contains("gs://bucket/a/b"), "{err}");
    }
}
