//! Exporting a state for a save: sealed as it is encoded and, once it is large, written to the
//! store part by part, so that a checkpoint of a large state holds it once in memory (with a
//! segment or two), not beside its encoding.

use crate::runtime::error::LifecycleError;
use crate::runtime::lifecycle::{Exported, Plumbing};
use crate::runtime::slot::export_now;
use crate::seal::writer::{SegmentSink, StateWriter, Written};
use crate::seal::{SealError, Sealer};
use crate::store::{ObjectWriter, StateStore, StoreError, block_on};

/// Exports `instance` at `generation` for a save of `service`. With a store that writes part by
/// part, a state whose encoding grows past the segmenting threshold is written while it is
/// encoded (the service is held meanwhile); a smaller one comes back sealed whole. A store that
/// takes whole objects only gets the encoding.
pub(crate) fn export_sealed<'s>(
    store: &'s dyn StateStore,
    sealer: &Sealer,
    service: &'s str,
    instance: &dyn Plumbing,
    generation: u64,
) -> Result<Exported<'s>, LifecycleError> {
    let Some(object) = store.begin_save(service, generation) else {
        let (encoded, _) = export_now(service, instance, || generation)?;
        return Ok(Exported::Encoded(encoded));
    };
    let save_failed = |source| LifecycleError::Save {
        service: service.to_owned(),
        source,
    };
    let seal_failed = |source| {
        save_failed(StoreError::Seal {
            object: store.location(service),
            source,
        })
    };
    let mut sink = StoreSink { object, failure: None };
    let mut writer = StateWriter::sealed(sealer, service, generation, &mut sink).map_err(seal_failed)?;
    let exported = instance.export(false, &mut writer);
    let sealing = writer.take_failure();
    let finished = match (&sealing, &exported) {
        (None, Ok(tag)) => Some(writer.finish(*tag)),
        _ => None,
    };
    // The store's own error first: a refused part is why the writer failed.
    if let Some(failure) = sink.failure {
        return Err(save_failed(failure));
    }
    if let Some(failure) = sealing {
        return Err(seal_failed(failure));
    }
    exported.map_err(|e| LifecycleError::Export {
        service: service.to_owned(),
        source: e.into_source(),
    })?;
    match finished {
        Some(Ok(Written::Whole(blob))) => Ok(Exported::Sealed(blob)),
        Some(Ok(Written::Segmented { .. })) => Ok(Exported::Streamed(sink.object)),
        Some(Err(failure)) => Err(seal_failed(failure)),
        None => Err(seal_failed(SealError::BadSegments(
            "the export ended without a state".into(),
        ))),
    }
}

/// Hands a segmented envelope's parts to the store as they are sealed.
struct StoreSink<'s> {
    object: Box<dyn ObjectWriter<'s> + 's>,
    /// What the store refused, if it refused a part.
    failure: Option<StoreError>,
}

impl SegmentSink for StoreSink<'_> {
    fn put(&mut self, part: Vec<u8>) -> Result<Option<Vec<u8>>, SealError> {
        block_on(self.object.write(&part))
            .map(|()| Some(part))
            .map_err(|error| {
                self.failure = Some(error);
                SealError::BadSegments("the store refused a part".into())
            })
    }
}
