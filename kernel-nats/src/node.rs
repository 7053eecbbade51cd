//! A kernel running services only while it holds their claims.

use std::sync::Arc;
use std::time::Duration;

use kernel_core::{Kernel, LifecycleError};

use crate::ownership::{Claim, ClaimError, Claims};

/// Taking a service over failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum TakeOverError {
    /// The claim could not be made (another node kept it past the wait, or the server failed).
    Claim(ClaimError),
    /// Registering, restoring, the fencing write or the start failed; the claim was released.
    Lifecycle(LifecycleError),
}

impl std::fmt::Display for TakeOverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TakeOverError::Claim(e) => write!(f, "taking the service over failed: {e}"),
            TakeOverError::Lifecycle(e) => write!(f, "taking the service over failed: {e}"),
        }
    }
}

impl std::error::Error for TakeOverError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            TakeOverError::Claim(e) => Some(e),
            TakeOverError::Lifecycle(e) => Some(e),
        }
    }
}

/// A service this node runs while it holds its claim. Dropping it stops refreshing the claim
/// (it expires; the service keeps running here until then is the caller's affair: use
/// [`release`](Self::release) to stop it and give it up cleanly).
pub struct Owned {
    kernel: Kernel,
    service: String,
    claim: Arc<Claim>,
    watcher: tokio::task::JoinHandle<()>,
}

/// Takes `service` over on this node:
///
/// 1. claims it, waiting up to `wait` while another node holds it (a dead owner's claim
///    expires after its time to live);
/// 2. registers it with `register` — with the kernel's store, the registration restores the
///    newest saved state, upgraded through its chain;
/// 3. makes the fencing write (a checkpoint of the state just restored): from then on, any
///    write by the previous owner fails with `StoreError::Conflict`;
/// 4. starts it;
///
/// and stops it the moment the claim is lost. On a failure after the claim, the claim is given
/// up.
pub async fn take_over<F, Fut>(
    kernel: &Kernel,
    claims: &Claims,
    service: &str,
    wait: Duration,
    register: F,
) -> Result<Owned, TakeOverError>
where
    F: FnOnce(Kernel) -> Fut,
    Fut: Future<Output = Result<(), LifecycleError>>,
{
    let deadline = tokio::time::Instant::now() + wait;
    let claim = loop {
        match claims.claim(service).await {
            Ok(claim) => break claim,
            Err(ClaimError::Held { .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => return Err(TakeOverError::Claim(error)),
        }
    };
    let claim = Arc::new(claim);
    let ready = async {
        register(kernel.clone()).await?;
        let fenced = kernel.clone();
        let name = service.to_owned();
        fenced.blocking(move |k| k.checkpoint_service(&name).map(drop)).await?;
        kernel.start_async(service).await
    };
    if let Err(error) = ready.await {
        let _ = claim.release().await;
        return Err(TakeOverError::Lifecycle(error));
    }
    let watcher = {
        let (kernel, claim, name) = (kernel.clone(), Arc::clone(&claim), service.to_owned());
        tokio::spawn(async move {
            claim.lost().await;
            tracing::error!(service = name, "claim lost: stopping the service on this node");
            if let Err(error) = kernel.stop_cascade_async(&name).await {
                tracing::error!(service = name, %error, "stopping a service whose claim was lost failed");
            }
        })
    };
    Ok(Owned {
        kernel: kernel.clone(),
        service: service.to_owned(),
        claim,
        watcher,
    })
}

impl Owned {
    /// The service.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// Whether this node still holds the claim (see [`Claim::is_valid`]).
    pub fn is_valid(&self) -> bool {
        self.claim.is_valid()
    }

    /// Stops the service here (saving its state through the store, a fenced write) and gives
    /// the claim up, so that another node can take it over at once.
    pub async fn release(self) -> Result<(), TakeOverError> {
        self.watcher.abort();
        self.kernel
            .stop_cascade_async(&self.service)
            .await
            .map_err(TakeOverError::Lifecycle)?;
        self.claim.release().await.map_err(TakeOverError::Claim)
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}
