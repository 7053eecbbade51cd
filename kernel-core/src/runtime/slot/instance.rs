//! A service with its types erased down to its protocol: what a slot holds, its hooks and
//! exports guarded against panics of user code.

use crate::boxed::ServiceFault;
use crate::runtime::context::Context;
use crate::runtime::lifecycle::{ExportError, Plumbing};
use crate::runtime::service::{BoxError, Handler, Service};
use crate::seal::writer::StateWriter;
use crate::state::precopy::PrecopySource;
use crate::state::{self, Migratable, MigrationError, StateTag};

/// A synchronous service with its types erased down to its protocol: what a slot holds.
pub(crate) trait Instance<Req, Resp>: Plumbing {
    fn start(&mut self, ctx: &Context<'_>) -> Result<(), BoxError>;
    fn stop(&mut self, ctx: &Context<'_>) -> Result<(), BoxError>;
    fn handle(&mut self, request: Req, ctx: &Context<'_>) -> Resp;
}

/// Runs a step of user code, its panic caught.
fn guarded<T, E: Into<BoxError>>(f: impl FnOnce() -> Result<T, E>) -> Result<T, ServiceFault> {
    ServiceFault::of(crate::panic::catch(f))
}

impl<S: Handler> Instance<S::Request, S::Response> for S {
    fn start(&mut self, ctx: &Context<'_>) -> Result<(), BoxError> {
        Handler::start(self, ctx)
    }

    fn stop(&mut self, ctx: &Context<'_>) -> Result<(), BoxError> {
        Handler::stop(self, ctx)
    }

    fn handle(&mut self, request: S::Request, ctx: &Context<'_>) -> S::Response {
        Handler::handle(self, request, ctx)
    }
}

impl<S: Service + Send> Plumbing for S {
    fn dependencies(&self) -> Vec<String> {
        Service::dependencies(self)
    }

    fn state_tag(&self) -> StateTag {
        StateTag::of::<S::State>()
    }

    fn precopy_source(&self) -> Option<&dyn PrecopySource> {
        let state = crate::panic::catch(|| self.export_state()).ok()?.ok()?;
        state.precopy_source()
    }

    fn export(&self, downgrade: bool, out: &mut StateWriter<'_>) -> Result<StateTag, ExportError> {
        // Each step is user code (`export_state`, the `down` conversion, `Serialize`): a panic
        // in any of them is that step's failure, and the instance is left as it was.
        let current = guarded(|| self.export_state()).map_err(ExportError::Handler)?;
        if downgrade {
            let previous = crate::panic::catch(|| current.downgrade())
                .unwrap_or_else(|message| {
                    Err(MigrationError::DowngradePanicked {
                        from: <S::State as Migratable>::TYPE_NAME,
                        from_version: <S::State as Migratable>::VERSION,
                        message,
                    })
                })
                .map_err(ExportError::Downgrade)?;
            guarded(|| state::encode_to(&previous, &mut *out)).map_err(ExportError::Encode)
        } else {
            guarded(|| state::encode_to(current, &mut *out)).map_err(ExportError::Encode)
        }
    }
}

pub(crate) type BoxInstance<Req, Resp> = Box<dyn Instance<Req, Resp>>;
