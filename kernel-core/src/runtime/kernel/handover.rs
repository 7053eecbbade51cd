//! What a takeover by a new process needs of the kernel (feature `takeover`): a service's
//! state exported and sealed for the successor, without writing it to the store.

use super::{Kernel, not_found};
use crate::runtime::error::LifecycleError;
use crate::runtime::slot::{Exported, Plumbing, export_now};
use crate::takeover::TakeoverError;

impl Kernel {
    /// Exports the state of `service` (whatever its status) at its next generation and seals
    /// it with the configured sealer; returns the sealed envelope and its generation.
    pub(crate) fn export_for_handover(&self, service: &str) -> Result<(Vec<u8>, u64), TakeoverError> {
        let shared = self.shared();
        let sealer = shared.sealer().ok_or(TakeoverError::NoSealer)?;
        let entry = shared.entry(service).ok_or_else(|| TakeoverError::Export {
            service: service.to_owned(),
            source: Box::new(not_found(service)),
        })?;
        let mut export = |instance: &dyn Plumbing, generation: u64| -> Result<Exported<'static>, LifecycleError> {
            let (encoded, _) = export_now(service, instance, || generation)?;
            Ok(Exported::Encoded(encoded))
        };
        let (exported, generation, _in_flight) =
            entry
                .lifecycle
                .export_for_save(&mut export)
                .map_err(|source| TakeoverError::Export {
                    service: service.to_owned(),
                    source: Box::new(source),
                })?;
        let sealed = match exported {
            Exported::Encoded(encoded) => sealer.seal_state_at(service, encoded, generation),
            Exported::Sealed(blob) => Ok(blob),
            // The exporter above never streams.
            Exported::Streamed(_) => Err(crate::seal::SealError::BadSegments(
                "a handover export was streamed".into(),
            )),
        };
        sealed
            .map(|sealed| (sealed, generation))
            .map_err(|source| TakeoverError::Seal {
                service: service.to_owned(),
                source,
            })
    }
}
