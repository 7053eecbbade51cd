//! Derive macros for [microkernel](https://docs.rs/microkernel); use them through the facade.
//!
//! - `#[derive(Service)]` with `#[service(name = "echo", deps = ["logger"])]` and an optional
//!   `#[state]` field implements `ServiceMeta`: the name, the dependencies and the state
//!   plumbing of a replacement. The user implements `Service` (the behaviour).
//! - `#[derive(Migratable)]` with `#[migratable(version = N, from = Prev)]` implements
//!   `Migratable`: one link of a state's version chain, checked at compile time.
//!
//! Each macro is split into attribute parsing (`attr`) and code generation.

extern crate proc_macro;

mod attr;
mod migratable;
mod schema;
mod service;
mod suggest;

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

/// Implements `ServiceMeta`: `#[service(name = "...", deps = ["..."])]`, and at most one
/// `#[state]` field whose type is `Migratable`.
#[proc_macro_derive(Service, attributes(service, state))]
pub fn derive_service(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    service::expand(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Implements `Migratable`: `#[migratable(version = N)]` for a first version,
/// `#[migratable(version = N, from = Prev)]` (upgrade by `From<Prev>`, or `TryFrom<Prev>` with
/// `try_from`), and optionally `down = path::to::fn` (a `fn(&Self) -> Prev` for rollbacks).
#[proc_macro_derive(Migratable, attributes(migratable))]
pub fn derive_migratable(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    migratable::expand(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
