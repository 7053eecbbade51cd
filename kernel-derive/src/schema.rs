//! The schema text a fingerprint is computed from: the type's name, field names and field
//! types, e.g. `EchoStateV2 { count: u64, greeting: String }`. Whitespace is dropped from types
//! so that formatting never changes a fingerprint.

use quote::ToTokens;
use syn::{Data, DeriveInput, Fields};

pub(crate) fn schema_text(input: &DeriveInput) -> syn::Result<String> {
    let name = input.ident.to_string();
    match &input.data {
        Data::Struct(data) => Ok(format!("{name}{}", fields_text(&data.fields))),
        Data::Enum(data) => {
            let variants: Vec<String> = data
                .variants
                .iter()
                .map(|v| format!("{}{}", v.ident, fields_text(&v.fields)))
                .collect();
            Ok(format!("enum {name} {{ {} }}", variants.join(", ")))
        }
        Data::Union(u) => Err(syn::Error::new_spanned(
            u.union_token,
            "#[derive(Migratable)] does not support unions: use a struct or an enum",
        )),
    }
}

fn fields_text(fields: &Fields) -> String {
    let ty = |f: &syn::Field| compact(&f.ty.to_token_stream().to_string());
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
