//! The error type user code hands the kernel, and how the kernel reports a failure of user code.

/// The error a service hook, an import or a conversion returns. Any error type converts into it
/// with `?`, and so do `&str` and `String`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A failure of the service's own code (a hook, `export_state`, `import_state`, a conversion of
/// its state chain, its state's `Serialize`/`Deserialize`): the error it returned, or its panic,
/// caught. Match on it to tell the two apart.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceFault {
    /// The code returned this error (the service's own error type, boxed).
    #[error(transparent)]
    Error(BoxError),
    /// The code panicked; the panic's message.
    #[error("panicked: {message}")]
    Panicked {
        /// The panic's message.
        message: String,
    },
}

impl ServiceFault {
    /// The outcome of user code run under [`crate::panic::catch`]: its error, or its panic.
    pub(crate) fn of<T, E: Into<BoxError>>(outcome: Result<Result<T, E>, String>) -> Result<T, Self> {
        match outcome {
            Ok(result) => result.map_err(|error| ServiceFault::Error(error.into())),
            Err(message) => Err(ServiceFault::Panicked { message }),
        }
    }
}
