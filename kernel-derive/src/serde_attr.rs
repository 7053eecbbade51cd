//! What the `#[serde(...)]` attributes of a state type do to its encoding, read so that the
//! schema describes what postcard really writes — and so that attributes postcard cannot read
//! back are refused here, with a message, instead of misreading a state at run time.

use proc_macro2::Span;
use syn::meta::ParseNestedMeta;
use syn::spanned::Spanned;
use syn::{Attribute, Token};

/// The serde attributes of a container (struct or enum) that matter to the schema.
#[derive(Default)]
pub(crate) struct SerdeContainer {
    /// `#[serde(transparent)]`: encoded as its one field.
    pub(crate) transparent: bool,
}

/// The serde attributes of a field or variant that matter to the schema.
#[derive(Default)]
pub(crate) struct SerdeMember {
    /// `skip` (or both `skip_serializing` and `skip_deserializing`): not encoded.
    pub(crate) skipped: bool,
    /// `with`, `serialize_with` or `deserialize_with`: encoded by user code; the path given.
    pub(crate) custom: Option<(Span, String)>,
}

const POSTCARD_IS_NOT_SELF_DESCRIBING: &str =
    "postcard (the state encoding) is not self-describing: it cannot read this back";

pub(crate) fn container(attrs: &[Attribute]) -> syn::Result<SerdeContainer> {
    let mut out = SerdeContainer::default();
    for_each_serde_key(attrs, |meta, key| {
        match key {
            "transparent" => out.transparent = true,
            "untagged" => {
                return Err(meta.error(format!(
                    "#[serde(untagged)] is not supported in state: {POSTCARD_IS_NOT_SELF_DESCRIBING}; \
                 remove it (postcard writes the variant's index)"
                )));
            }
            "tag" | "content" => {
                return Err(meta.error(format!(
                    "#[serde({key} = ...)] (internally or adjacently tagged enums) is not supported in state: \
                 {POSTCARD_IS_NOT_SELF_DESCRIBING}; remove it (postcard writes the variant's index)"
                )));
            }
            "into" | "from" | "try_from" => {
                return Err(meta.error(format!(
                    "#[serde({key} = ...)] encodes another type: the schema cannot see it; \
                 make that type the state (or a field) instead"
                )));
            }
            _ => {}
        }
        skip_value(meta)
    })?;
    Ok(out)
}

pub(crate) fn member(attrs: &[Attribute], what: &str) -> syn::Result<SerdeMember> {
    let mut out = SerdeMember::default();
    let (mut skip_ser, mut skip_de) = (None, None);
    for_each_serde_key(attrs, |meta, key| {
        match key {
            "skip" => out.skipped = true,
            "skip_serializing" => skip_ser = Some(meta.path.span()),
            "skip_deserializing" => skip_de = Some(meta.path.span()),
            "skip_serializing_if" => return Err(meta.error(format!(
                "#[serde(skip_serializing_if = ...)] is not supported in state: postcard cannot tell that the {what} \
                 was left out and would misread what follows; remove it"
            ))),
            "flatten" => {
                return Err(meta.error(format!(
                    "#[serde(flatten)] is not supported in state: {POSTCARD_IS_NOT_SELF_DESCRIBING}; \
                 remove it and nest the struct as a field"
                )));
            }
            "untagged" | "other" => {
                return Err(meta.error(format!(
                    "#[serde({key})] is not supported in state: {POSTCARD_IS_NOT_SELF_DESCRIBING}; remove it"
                )));
            }
            "with" | "serialize_with" | "deserialize_with" => {
                let value: syn::Expr = meta.value()?.parse()?;
                let path = match &value {
                    syn::Expr::Lit(syn::ExprLit {
                        lit: syn::Lit::Str(s), ..
                    }) => s.value(),
                    other => quote::quote!(#other).to_string(),
                };
                out.custom = Some((meta.path.span(), path));
                return Ok(());
            }
            _ => {}
        }
        skip_value(meta)
    })?;
    match (skip_ser, skip_de) {
        (Some(_), Some(_)) => out.skipped = true,
        (Some(span), None) | (None, Some(span)) => {
            return Err(syn::Error::new(
                span,
                format!(
                    "skipping a {what} on one side only (serialize or deserialize) is not supported in state: \
                     postcard would misread every {what} after it; use #[serde(skip)]"
                ),
            ));
        }
        (None, None) => {}
    }
    Ok(out)
}

/// Calls `f` with each key of every `#[serde(...)]` attribute.
fn for_each_serde_key(
    attrs: &[Attribute],
    mut f: impl FnMut(&ParseNestedMeta<'_>, &str) -> syn::Result<()>,
) -> syn::Result<()> {
    for attr in attrs.iter().filter(|a| a.path().is_ident("serde")) {
        attr.parse_nested_meta(|meta| {
            let key = meta.path.get_ident().map(ToString::to_string).unwrap_or_default();
            f(&meta, &key)
        })?;
    }
    Ok(())
}

/// Consumes a key's value (`= expr` or `(...)`) that the schema does not need.
fn skip_value(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        meta.value()?.parse::<syn::Expr>()?;
    } else if meta.input.peek(syn::token::Paren) {
        meta.parse_nested_meta(|inner| skip_value(&inner))?;
    }
    Ok(())
}
