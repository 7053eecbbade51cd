//! The error type user code hands the kernel.

/// The error a service hook, an import or a conversion returns. Any error type converts into it
/// with `?`, and so do `&str` and `String`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;
