//! Key-value buckets as this crate makes them: the stream created explicitly, configured as a
//! key-value bucket's stream is (one message per subject, rollups allowed, deletes denied,
//! direct gets allowed, discard new), because the client's own bucket creation asks a 2.9
//! server for account information it does not give.

use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};

/// How a bucket is made when it does not exist yet.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BucketConfig {
    /// How long an entry lives (zero: for ever).
    pub(crate) max_age: Duration,
    /// How many servers of a cluster keep it.
    pub(crate) replicas: usize,
}

/// Opens bucket `bucket`, creating it with `config` if it is missing.
pub(crate) async fn open_or_create(
    context: &jetstream::Context,
    bucket: &str,
    config: BucketConfig,
) -> Result<kv::Store, Box<dyn std::error::Error + Send + Sync>> {
    if let Ok(store) = context.get_key_value(bucket).await {
        return Ok(store);
    }
    let stream = stream::Config {
        name: format!("KV_{bucket}"),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        max_age: config.max_age,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        num_replicas: config.replicas.max(1),
        storage: stream::StorageType::File,
        ..Default::default()
    };
    context.get_or_create_stream(stream).await?;
    Ok(context.get_key_value(bucket).await?)
}
