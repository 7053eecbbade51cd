//! Code generation for `#[derive(Service)]`.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Field, Member};

use crate::attr::service_attr;

pub(crate) fn expand(input: &DeriveInput) -> syn::Result<TokenStream> {
    let attr = service_attr(&input.attrs, input.ident.span())?;
    let state = state_field(input)?;
    let ident = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let name = &attr.name;
    let deps = &attr.deps;
    let krate = &attr.krate;
    let (state_ty, export, import) = match state {
        Some((member, field)) => {
            let ty = &field.ty;
            // Spanned at the field's type, so "not Migratable" points at it.
            let state_ty = quote_spanned!(ty.span()=> #ty);
            (
                state_ty,
                quote!(::core::result::Result::Ok(&self.#member)),
                quote!(self.#member = state;),
            )
        }
        None => (
            quote!(#krate::Stateless),
            quote!(::core::result::Result::Ok(&#krate::Stateless)),
            quote!(let _ = state;),
        ),
    };
    Ok(quote! {
        #[automatically_derived]
        impl #impl_generics #krate::Service for #ident #ty_generics #where_clause {
            type State = #state_ty;

            fn name(&self) -> &str {
                #name
            }

            fn dependencies(&self) -> ::std::vec::Vec<::std::string::String> {
                ::std::vec![#(::std::string::String::from(#deps)),*]
            }

            fn export_state(&self) -> ::core::result::Result<&Self::State, #krate::BoxError> {
                #export
            }

            fn import_state(&mut self, state: Self::State) -> ::core::result::Result<(), #krate::BoxError> {
                #import
                ::core::result::Result::Ok(())
            }
        }
    })
}

/// The `#[state]` field, if any; a second one is an error pointing at it.
fn state_field(input: &DeriveInput) -> syn::Result<Option<(Member, &Field)>> {
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new(
            input.ident.span(),
            "#[derive(Service)] works on structs: a service is a struct whose fields are its state",
        ));
    };
    let mut found: Option<(Member, &Field)> = None;
    for (index, field) in data.fields.iter().enumerate() {
        let Some(attr) = field.attrs.iter().find(|a| a.path().is_ident("state")) else {
            continue;
        };
        attr.meta.require_path_only().map_err(|_| {
            syn::Error::new_spanned(
                attr,
                "#[state] takes no arguments: the field's type is the state's type",
            )
        })?;
        if let Some((first, _)) = &found {
            let first = match first {
                Member::Named(id) => id.to_string(),
                Member::Unnamed(i) => i.index.to_string(),
            };
            return Err(syn::Error::new_spanned(
                attr,
                format!("only one field can be #[state] (`{first}` already is): put the state in one struct"),
            ));
        }
        let member = match &field.ident {
            Some(id) => Member::Named(id.clone()),
            None => Member::Unnamed(index.into()),
        };
        found = Some((member, field));
    }
    Ok(found)
}
