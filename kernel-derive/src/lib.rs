//! Derive macros for [microkernel](https://docs.rs/microkernel); use them through the facade.
//!
//! - `#[derive(Service)]` with `#[service(name = "echo", deps = ["logger"])]` and an optional
//!   `#[state]` field implements `Service`: the name, the dependencies and the state
//!   plumbing of a replacement. The user implements `Handler` (the behaviour).
//! - `#[derive(Migratable)]` with `#[migratable(version = N, from = Prev)]` implements
//!   `Migratable`: one link of a state's version chain, checked at compile time.
//!
//! Each macro is split into attribute parsing (`attr`) and code generation.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate proc_macro;

mod attr;
mod migratable;
mod schema;
mod serde_attr;
mod service;
mod suggest;

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

/// Implements `Service`: `#[service(name = "...", deps = ["..."])]`, and at most one
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
///
/// It also implements `Schema` (the type's whole structure, which the fingerprint hashes): each
/// field's type must have one — `#[derive(Schema)]` on nested types of your own,
/// `#[schema(as = T)]` on a field whose encoding is customised or whose type is foreign.
///
/// One field of type `PrecopyMap<K, V>` may be marked `#[precopy]`: a replacement carries it
/// across before its pause (see `microkernel::state::precopy`). Its values then upgrade one by
/// one, by `From` the previous version's `#[precopy]` field's values (which must have one);
/// `#[precopy(start)]` marks the first version that pre-copies.
#[proc_macro_derive(Migratable, attributes(migratable, schema, precopy))]
pub fn derive_migratable(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    migratable::expand(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Implements `Schema` for a type nested in a state: its structure in postcard's data model,
/// which the state's fingerprint includes. `#[schema(as = T)]` on a field says what a field with
/// a customised encoding (`#[serde(with = ...)]`) or a foreign type encodes as. Serde attributes
/// that postcard cannot read back (`flatten`, `skip_serializing_if`, untagged or internally
/// tagged enums) are refused.
#[proc_macro_derive(Schema, attributes(schema))]
pub fn derive_schema(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    schema::schema_impl(&input, None)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

#[cfg(test)]
mod tests {
    use syn::parse_quote;

    /// `crate = path` makes every path in the generated code start at `path`.
    #[test]
    fn crate_paths_replace_the_facade_everywhere() {
        let migratable: syn::DeriveInput = parse_quote! {
            #[migratable(version = 2, from = V1, crate = outer::mk)]
            struct V2 { inner: Inner }
        };
        let service: syn::DeriveInput = parse_quote! {
            #[service(name = "echo", crate = "outer::mk")]
            struct Echo { #[state] state: V2 }
        };
        let schema: syn::DeriveInput = parse_quote! {
            #[schema(crate = outer::mk)]
            enum Inner { A(u8), B { b: u16 } }
        };
        for code in [
            super::migratable::expand(&migratable).unwrap().to_string(),
            super::service::expand(&service).unwrap().to_string(),
            super::schema::schema_impl(&schema, None).unwrap().to_string(),
        ] {
            assert!(code.contains("outer :: mk ::"), "{code}");
            assert!(!code.contains(":: microkernel"), "{code}");
        }
    }
}
