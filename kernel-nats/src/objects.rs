//! States larger than a message: kept in a JetStream object store beside the bucket, the
//! key-value entry holding only a pointer to them — so every write is still one compare-and-set
//! on the entry's revision, and an object whose compare-and-set failed is removed again.

use async_nats::jetstream::{self, object_store, stream};
use bytes::Bytes;
use kernel_core::store::{Location, StoreError};
use tokio::io::AsyncReadExt;

/// How long reading one object may take.
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// What a pointer entry starts with; a sealed state starts with `MKSE`, so the two never meet.
const POINTER: &[u8] = b"MKOBJ1:";

/// The entry that points at object `name`.
pub(crate) fn pointer(name: &str) -> Bytes {
    let mut value = POINTER.to_vec();
    value.extend_from_slice(name.as_bytes());
    Bytes::from(value)
}

/// The object an entry points at, if it is a pointer.
pub(crate) fn pointed(value: &[u8]) -> Option<&str> {
    value
        .strip_prefix(POINTER)
        .and_then(|name| std::str::from_utf8(name).ok())
}

/// The object store beside KV bucket `bucket`: `<bucket>_objects`.
pub(crate) fn objects_bucket(bucket: &str) -> String {
    format!("{bucket}_objects")
}

/// Opens the object store, creating its stream if missing as an object store's stream is
/// configured (the client's own creation asks a 2.9 server for account information it lacks).
pub(crate) async fn open(
    context: &jetstream::Context,
    bucket: &str,
    replicas: usize,
) -> Result<object_store::ObjectStore, Box<dyn std::error::Error + Send + Sync>> {
    let name = objects_bucket(bucket);
    if let Ok(store) = context.get_object_store(&name).await {
        return Ok(store);
    }
    let config = stream::Config {
        name: format!("OBJ_{name}"),
        subjects: vec![format!("$O.{name}.C.>"), format!("$O.{name}.M.>")],
        discard: stream::DiscardPolicy::New,
        allow_rollup: true,
        allow_direct: true,
        num_replicas: replicas,
        storage: stream::StorageType::File,
        ..Default::default()
    };
    context.get_or_create_stream(config).await?;
    Ok(context.get_object_store(&name).await?)
}

/// Writes `bytes` as object `name`.
pub(crate) async fn put(
    store: &object_store::ObjectStore,
    name: &str,
    bytes: &[u8],
    at: &Location,
) -> Result<(), StoreError> {
    let mut reader = bytes;
    store
        .put(name, &mut reader)
        .await
        .map(drop)
        .map_err(|e| StoreError::Backend {
            object: at.clone(),
            source: format!("writing object `{name}` of the object store: {e}").into(),
        })
}

/// Reads object `name`, refusing one larger than `limit` before reading it.
pub(crate) async fn get(
    store: &object_store::ObjectStore,
    name: &str,
    limit: u64,
    at: &Location,
) -> Result<Vec<u8>, StoreError> {
    let failed = |e: String| StoreError::Backend {
        object: at.clone(),
        source: format!("reading object `{name}` of the object store: {e}").into(),
    };
    let read = async {
        let mut object = store.get(name).await.map_err(|e| failed(e.to_string()))?;
        let size = object.info().size as u64;
        if size > limit {
            return Err(StoreError::TooLarge {
                object: at.clone(),
                size,
                limit,
            });
        }
        let mut bytes = Vec::with_capacity(size as usize);
        object
            .read_to_end(&mut bytes)
            .await
            .map_err(|e| failed(e.to_string()))?;
        Ok(bytes)
    };
    // An object whose chunks vanish while it is read (removed by a writer that replaced it)
    // would leave the read waiting for them for ever.
    tokio::time::timeout(READ_TIMEOUT, read)
        .await
        .unwrap_or_else(|_| Err(failed(format!("no complete object within {READ_TIMEOUT:?}"))))
}

/// Removes object `name`, best effort: a leftover is logged, never an error of the save.
pub(crate) async fn remove(store: &object_store::ObjectStore, name: &str) {
    if let Err(error) = store.delete(name).await {
        tracing::warn!(object = name, %error, "an object no entry points at could not be removed");
    }
}
