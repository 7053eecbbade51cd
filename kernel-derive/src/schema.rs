//! Code generation for a type's `Schema`: its structure in postcard's data model, built at
//! compile time from the schemas of its fields, so nested types are seen at any depth. Used by
//! `#[derive(Schema)]` and by `#[derive(Migratable)]`, which implements it too.
//!
//! Also the legacy schema text (type name, field names and field types as written), whose hash
//! was the fingerprint before structural fingerprints; it is still emitted so older files load.

use proc_macro2::{TokenStream, TokenTree};
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Field, Fields, Ident, Type};

use crate::attr::{Krate, schema_attr};
use crate::serde_attr;

/// `impl Schema for #ident`, with `T: Schema` bounds for type parameters. `krate` is the
/// facade's path when the caller (`Migratable`) already knows it; else `#[schema(crate = ..)]`.
pub(crate) fn schema_impl(input: &DeriveInput, krate: Option<&Krate>) -> syn::Result<TokenStream> {
    let ident = &input.ident;
    let container = schema_attr(&input.attrs, true)?;
    let krate = match (krate, container.krate) {
        (Some(krate), _) => krate.clone(),
        (None, Some(krate)) => krate,
        (None, None) => Krate::default(),
    };
    let krate = &krate;
    let shape = match &container.as_type {
        Some(ty) => schema_of(krate, ty),
        None => container_shape(input, krate)?,
    };
    let mut generics = input.generics.clone();
    for param in generics.type_params_mut() {
        param.bounds.push(syn::parse_quote!(#krate::state::Schema));
    }
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    Ok(quote! {
        #[automatically_derived]
        impl #impl_generics #krate::state::Schema for #ident #ty_generics #where_clause {
            const SCHEMA: &'static #krate::state::NamedType = #shape;
        }
    })
}

/// The `&'static NamedType` expression of the whole type.
fn container_shape(input: &DeriveInput, krate: &Krate) -> syn::Result<TokenStream> {
    let serde = serde_attr::container(&input.attrs)?;
    let name = input.ident.to_string();
    match &input.data {
        Data::Struct(data) if serde.transparent => transparent_shape(input, &data.fields, krate),
        Data::Struct(data) => {
            let model = fields_model(&input.ident, &data.fields, Kind::Struct, krate)?;
            Ok(named(krate, &name, model))
        }
        Data::Enum(data) => {
            let variants = data
                .variants
                .iter()
                .map(|variant| {
                    let member = serde_attr::member(&variant.attrs, "variant")?;
                    if member.skipped {
                        return Err(syn::Error::new_spanned(
                            &variant.ident,
                            "a skipped variant is not supported in state: postcard numbers variants by \
                             position; remove #[serde(skip)] (or the variant)",
                        ));
                    }
                    if let Some((span, _)) = member.custom {
                        return Err(syn::Error::new(
                            span,
                            "a variant encoded by user code is not supported in state: the schema cannot see it",
                        ));
                    }
                    let model = fields_model(&input.ident, &variant.fields, Kind::Variant, krate)?;
                    let name = variant.ident.to_string();
                    Ok(quote! {
                        &#krate::state::NamedVariant { name: #name, ty: &#model }
                    })
                })
                .collect::<syn::Result<Vec<_>>>()?;
            Ok(named(
                krate,
                &name,
                quote!(#krate::state::DataModelType::Enum(&[#(#variants),*])),
            ))
        }
        Data::Union(u) => Err(syn::Error::new_spanned(
            u.union_token,
            "unions are not supported in state: use a struct or an enum",
        )),
    }
}

fn named(krate: &Krate, name: &str, model: TokenStream) -> TokenStream {
    quote!(&#krate::state::NamedType { name: #name, ty: &#model })
}

/// `<T as Schema>::SCHEMA`, spanned at `T` so that a missing impl is reported there.
fn schema_of(krate: &Krate, ty: &Type) -> TokenStream {
    quote_spanned!(ty.span()=> <#ty as #krate::state::Schema>::SCHEMA)
}

#[derive(Clone, Copy)]
enum Kind {
    Struct,
    Variant,
}

/// The data model of a struct's or a variant's fields (skipped fields left out).
fn fields_model(owner: &Ident, fields: &Fields, kind: Kind, krate: &Krate) -> syn::Result<TokenStream> {
    let (d, v) = (
        quote!(#krate::state::DataModelType),
        quote!(#krate::state::DataModelVariant),
    );
    let kept = kept_fields(owner, fields, krate)?;
    let shapes = kept.iter().map(|(_, shape)| shape);
    Ok(match (fields, kind) {
        (Fields::Unit, Kind::Struct) => quote!(#d::UnitStruct),
        (Fields::Unit, Kind::Variant) => quote!(#v::UnitVariant),
        (Fields::Named(_), _) => {
            let values = kept.iter().map(|(field, shape)| {
                let name = field.ident.as_ref().expect("named field").to_string();
                quote!(&#krate::state::NamedValue { name: #name, ty: #shape })
            });
            match kind {
                Kind::Struct => quote!(#d::Struct(&[#(#values),*])),
                Kind::Variant => quote!(#v::StructVariant(&[#(#values),*])),
            }
        }
        // serde encodes a one-field tuple struct (or variant) as a newtype.
        (Fields::Unnamed(unnamed), _) if unnamed.unnamed.len() == 1 && kept.len() == 1 => {
            let shape = &kept[0].1;
            match kind {
                Kind::Struct => quote!(#d::NewtypeStruct(#shape)),
                Kind::Variant => quote!(#v::NewtypeVariant(#shape)),
            }
        }
        (Fields::Unnamed(_), Kind::Struct) => quote!(#d::TupleStruct(&[#(#shapes),*])),
        (Fields::Unnamed(_), Kind::Variant) => quote!(#v::TupleVariant(&[#(#shapes),*])),
    })
}

/// `#[serde(transparent)]`: the schema of the one field that is encoded.
fn transparent_shape(input: &DeriveInput, fields: &Fields, krate: &Krate) -> syn::Result<TokenStream> {
    let kept = kept_fields(&input.ident, fields, krate)?;
    match kept.as_slice() {
        [(_, shape)] => Ok(shape.clone()),
        _ => Err(syn::Error::new_spanned(
            &input.ident,
            "#[serde(transparent)] needs exactly one field that is not skipped",
        )),
    }
}

/// The fields that are encoded, each with the expression of its schema.
fn kept_fields<'a>(owner: &Ident, fields: &'a Fields, krate: &Krate) -> syn::Result<Vec<(&'a Field, TokenStream)>> {
    let mut kept = Vec::new();
    for field in fields {
        let serde = serde_attr::member(&field.attrs, "field")?;
        let declared = schema_attr(&field.attrs, false)?.as_type;
        if serde.skipped {
            continue;
        }
        let shape = match (declared, serde.custom) {
            (Some(ty), _) => schema_of(krate, &ty),
            (None, Some((_, path))) if is_bulk_map(&path) => field_schema(owner, field, krate)?,
            (None, Some((span, path))) => {
                return Err(syn::Error::new(
                    span,
                    format!(
                        "this field is encoded by `{path}`, so its type does not say what its bytes are: \
                         add #[schema(as = T)] naming a type that serde encodes the same way"
                    ),
                ));
            }
            (None, None) => field_schema(owner, field, krate)?,
        };
        kept.push((field, shape));
    }
    Ok(kept)
}

/// `state::bulk_btree_map` and `state::hash_map` encode exactly as the map itself does (they
/// only decode faster), so the field's own type is its schema.
fn is_bulk_map(path: &str) -> bool {
    let path = path.replace(' ', "");
    path.ends_with("state::bulk_btree_map") || path.ends_with("state::hash_map")
}

/// The schema of a field's own type; a type that contains itself has no finite schema.
fn field_schema(owner: &Ident, field: &Field, krate: &Krate) -> syn::Result<TokenStream> {
    if mentions(field.ty.to_token_stream(), owner) {
        return Err(syn::Error::new_spanned(
            &field.ty,
            format!(
                "`{owner}` contains itself: a recursive type has no finite schema, so it cannot be part of a \
                 state; store it flat (e.g. nodes in a Vec, linked by index)"
            ),
        ));
    }
    Ok(schema_of(krate, &field.ty))
}

/// Whether the type names `owner` itself: `Self`, or `owner` not preceded by `::` (so
/// `other::Tree` is another type, not a recursion).
fn mentions(tokens: TokenStream, owner: &Ident) -> bool {
    let mut after_path_separator = false;
    for token in tokens {
        let found = match &token {
            TokenTree::Ident(ident) => ident == "Self" || (ident == owner && !after_path_separator),
            TokenTree::Group(group) => mentions(group.stream(), owner),
            TokenTree::Punct(_) | TokenTree::Literal(_) => false,
        };
        if found {
            return true;
        }
        after_path_separator = matches!(&token, TokenTree::Punct(p) if p.as_char() == ':');
    }
    false
}

/// The legacy schema text: `EchoStateV2 { count: u64, greeting: String }`, whitespace dropped
/// from types.
pub(crate) fn legacy_text(input: &DeriveInput) -> syn::Result<String> {
    let name = input.ident.to_string();
    match &input.data {
        Data::Struct(data) => Ok(format!("{name}{}", legacy_fields(&data.fields))),
        Data::Enum(data) => {
            let variants: Vec<String> = data
                .variants
                .iter()
                .map(|v| format!("{}{}", v.ident, legacy_fields(&v.fields)))
                .collect();
            Ok(format!("enum {name} {{ {} }}", variants.join(", ")))
        }
        Data::Union(u) => Err(syn::Error::new_spanned(
            u.union_token,
            "#[derive(Migratable)] does not support unions: use a struct or an enum",
        )),
    }
}

fn legacy_fields(fields: &Fields) -> String {
    let ty = |f: &Field| compact(&f.ty.to_token_stream().to_string());
    match fields {
        Fields::Named(named) => {
            let list: Vec<String> = named
                .named
                .iter()
                .map(|f| format!("{}: {}", f.ident.as_ref().expect("named"), ty(f)))
                .collect();
            format!(" {{ {} }}", list.join(", "))
        }
        Fields::Unnamed(unnamed) => {
            let list: Vec<String> = unnamed.unnamed.iter().map(ty).collect();
            format!("({})", list.join(", "))
        }
        Fields::Unit => String::new(),
    }
}

fn compact(tokens: &str) -> String {
    tokens.chars().filter(|c| !c.is_whitespace()).collect()
}
