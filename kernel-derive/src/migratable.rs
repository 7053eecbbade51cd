//! Code generation for `#[derive(Migratable)]`.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{DeriveInput, Path};

use crate::attr::{Krate, MigratableAttr, PrecopyField, migratable_attr, precopy_field};
use crate::schema::{legacy_text, schema_impl};

pub(crate) fn expand(input: &DeriveInput) -> syn::Result<TokenStream> {
    if !input.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(
            &input.generics,
            "#[derive(Migratable)] does not support generic types: a state's schema must be concrete; \
             use a concrete type (or a type alias of one) as the state",
        ));
    }
    let attr = migratable_attr(&input.attrs, input.ident.span())?;
    let legacy = legacy_text(input)?;
    let krate = &attr.krate;
    let schema = schema_impl(input, Some(krate))?;
    let ident = &input.ident;
    let type_name = ident.to_string();
    let version = attr.version;
    let version_lit = quote_spanned!(attr.version_span=> #version);
    let (chain, order_check) = match &attr.from {
        Some(from) => link(input, &attr, from),
        None => (first_version(krate), TokenStream::new()),
    };
    let (precopy_items, precopy_impl) = match &precopy_field(input)? {
        Some(field) => precopy(ident, krate, attr.from.as_ref(), field),
        None => (TokenStream::new(), TokenStream::new()),
    };
    Ok(quote! {
        #[automatically_derived]
        impl #krate::Migratable for #ident {
            const VERSION: u32 = #version_lit;
            const LEGACY_FINGERPRINT: ::core::option::Option<#krate::state::Fingerprint> =
                ::core::option::Option::Some(#krate::state::legacy_fingerprint(#legacy, #version));
            const TYPE_NAME: &'static str = #type_name;
            #chain
            #precopy_items
        }

        #order_check

        #precopy_impl

        #schema
    })
}

fn first_version(krate: &Krate) -> TokenStream {
    quote! {
        type Previous = #krate::state::Origin;

        fn upgrade(previous: #krate::state::Origin)
            -> ::core::result::Result<Self, #krate::state::MigrationError>
        {
            match previous {}
        }
    }
}

/// A later version: `Previous`, the upgrade, the optional downgrade, and the compile-time check
/// that the previous version is lower. Each piece is spanned at the attribute part it comes from.
fn link(input: &DeriveInput, attr: &MigratableAttr, from: &Path) -> (TokenStream, TokenStream) {
    let ident = &input.ident;
    let krate = &attr.krate;
    let version = attr.version;
    let span = from.span();
    let order_message = format!(
        "`{}` (version {version}) upgrades from `{}`, whose version must be lower than {version}",
        ident,
        quote!(#from).to_string().replace(' ', ""),
    );
    let previous = quote_spanned!(span=> #from);
    let upgrade = match attr.try_from {
        None => quote_spanned! {span=>
            ::core::result::Result::Ok(<Self as ::core::convert::From<#from>>::from(previous))
        },
        Some(_) => quote_spanned! {span=>
            <Self as ::core::convert::TryFrom<#from>>::try_from(previous).map_err(|error| {
                #krate::state::MigrationError::Upgrade {
                    from: <#from as #krate::Migratable>::TYPE_NAME,
                    from_version: <#from as #krate::Migratable>::VERSION,
                    to: <Self as #krate::Migratable>::TYPE_NAME,
                    to_version: #version,
                    source: ::core::convert::Into::into(error),
                }
            })
        },
    };
    let downgrade = attr.down.as_ref().map(|down| {
        quote_spanned! {down.span()=>
            fn downgrade(&self) -> ::core::result::Result<Self::Previous, #krate::state::MigrationError> {
                let down: fn(&Self) -> Self::Previous = #down;
                ::core::result::Result::Ok(down(self))
            }
        }
    });
    let items = quote! {
        type Previous = #previous;

        fn upgrade(previous: Self::Previous)
            -> ::core::result::Result<Self, #krate::state::MigrationError>
        {
            #upgrade
        }

        #downgrade
    };
    let order_check = quote_spanned! {span=>
        const _: () = ::core::assert!(
            <<#ident as #krate::Migratable>::Previous as #krate::Migratable>::VERSION < #version,
            #order_message
        );
    };
    (items, order_check)
}

/// A state with a `#[precopy]` field: the `Migratable` items that expose it, and the `Precopy`
/// impl, whose entries upgrade through the previous version's unless the chain starts here.
fn precopy(ident: &syn::Ident, krate: &Krate, from: Option<&Path>, field: &PrecopyField) -> (TokenStream, TokenStream) {
    let (member, ty, span) = (&field.member, &field.ty, field.span);
    let precopy = quote!(#krate::state::precopy);
    let items = quote_spanned! {span=>
        const PRECOPY: bool = true;

        fn precopy_source(&self) -> ::core::option::Option<&dyn #precopy::PrecopySource> {
            ::core::option::Option::Some(&self.#member)
        }

        fn precopy_receiver(tag: #krate::state::StateTag)
            -> ::core::option::Option<::std::boxed::Box<dyn #precopy::PrecopyReceiver<Self>>>
        {
            #precopy::receiver::<Self>(tag)
        }
    };
    let previous = from.filter(|_| !field.start);
    let (older_versions, older_entries, older_state) = match previous {
        Some(from) => (
            quote_spanned!(span=> || <#from as #precopy::Precopy>::precopies_from(version)),
            quote_spanned! {span=>
                let (key, entry) = <#from as #precopy::Precopy>::decode_entry(version, bytes)?;
                ::core::result::Result::Ok((key, entry.map(
                    <Self::Entry as ::core::convert::From<<#from as #precopy::Precopy>::Entry>>::from,
                )))
            },
            quote_spanned! {span=>
                let previous = <#from as #precopy::Precopy>::decode_paused(tag, body, token)?;
                #precopy::upgrade_paused::<Self>(previous)
            },
        ),
        None => (
            TokenStream::new(),
            quote!(::core::result::Result::Err(#precopy::not_precopied::<Self>(version))),
            quote!(::core::result::Result::Err(#precopy::not_precopied::<Self>(tag.version))),
        ),
    };
    let implementation = quote_spanned! {span=>
        #[automatically_derived]
        // An entry type that stays the same converts by the reflexive `From`.
        #[allow(clippy::useless_conversion)]
        impl #precopy::Precopy for #ident {
            type Key = <#ty as #precopy::PrecopyField>::Key;
            type Entry = <#ty as #precopy::PrecopyField>::Entry;

            fn precopy_map(&self) -> &#krate::PrecopyMap<Self::Key, Self::Entry> {
                &self.#member
            }

            fn precopy_map_mut(&mut self) -> &mut #krate::PrecopyMap<Self::Key, Self::Entry> {
                &mut self.#member
            }

            fn precopies_from(version: u32) -> bool {
                version == <Self as #krate::Migratable>::VERSION #older_versions
            }

            fn decode_entry(version: u32, bytes: &mut &[u8])
                -> ::core::result::Result<
                    (Self::Key, ::core::option::Option<Self::Entry>),
                    #krate::state::StateError,
                >
            {
                if version == <Self as #krate::Migratable>::VERSION {
                    return #precopy::take_entry::<Self>(bytes);
                }
                #older_entries
            }

            fn decode_paused(
                tag: #krate::state::StateTag,
                body: #krate::state::Body<'_, '_>,
                token: &::std::sync::Arc<#precopy::Placeholder>,
            ) -> ::core::result::Result<Self, #krate::state::StateError> {
                if tag.version == <Self as #krate::Migratable>::VERSION {
                    return #precopy::decode_paused_exact::<Self>(tag, body, token);
                }
                #older_state
            }
        }
    };
    (items, implementation)
}
