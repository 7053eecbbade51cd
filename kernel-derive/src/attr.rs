//! Attribute parsing for both derives: every error points at the offending tokens and says how
//! to fix it.

use proc_macro2::Span;
use syn::meta::ParseNestedMeta;
use syn::spanned::Spanned;
use syn::{Attribute, Expr, ExprArray, Lit, LitStr, Path};

use crate::suggest::unknown_key;

/// `#[service(name = "...", deps = [...])]`.
pub(crate) struct ServiceAttr {
    pub(crate) name: LitStr,
    pub(crate) deps: Vec<LitStr>,
    pub(crate) krate: Krate,
}

const SERVICE_KEYS: &[&str] = &["name", "deps", "crate"];

/// The path generated code names the facade by: `::microkernel`, or what `crate = path` says
/// (for a crate that re-exports microkernel under another name).
#[derive(Clone)]
pub(crate) struct Krate(proc_macro2::TokenStream);

impl Default for Krate {
    fn default() -> Self {
        Self(quote::quote!(::microkernel))
    }
}

impl quote::ToTokens for Krate {
    fn to_tokens(&self, tokens: &mut proc_macro2::TokenStream) {
        self.0.to_tokens(tokens);
    }
}

/// The value of `key = value`, seen through the invisible groups `macro_rules!` wraps around a
/// `$x:literal` or `$x:expr` it substitutes (else a literal passed through a macro is refused).
fn value_expr(meta: &ParseNestedMeta<'_>) -> syn::Result<Expr> {
    Ok(ungrouped(meta.value()?.parse()?))
}

fn ungrouped(expr: Expr) -> Expr {
    match expr {
        Expr::Group(group) => ungrouped(*group.expr),
        other => other,
    }
}

/// `crate = path` or `crate = "path"`.
fn crate_value(meta: &ParseNestedMeta<'_>) -> syn::Result<Krate> {
    let expr = value_expr(meta)?;
    let path: Path = match &expr {
        Expr::Lit(syn::ExprLit { lit: Lit::Str(s), .. }) => s.parse()?,
        Expr::Path(p) => p.path.clone(),
        other => {
            return Err(syn::Error::new_spanned(
                other,
                "expected a path to the microkernel crate, e.g. `crate = my_crate::microkernel`",
            ));
        }
    };
    Ok(Krate(quote::quote!(#path)))
}

pub(crate) fn service_attr(attrs: &[Attribute], ident_span: Span) -> syn::Result<ServiceAttr> {
    let mut name = None;
    let mut deps = Vec::new();
    let mut krate = Krate::default();
    let mut seen = None;
    for attr in attrs.iter().filter(|a| a.path().is_ident("service")) {
        if seen.replace(attr).is_some() {
            return Err(syn::Error::new_spanned(
                attr,
                "duplicate #[service] attribute; merge them into one",
            ));
        }
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("name") {
                name = Some(string_value(&meta, "name = \"echo\"")?);
            } else if meta.path.is_ident("deps") {
                deps = string_list(&meta)?;
            } else if meta.path.is_ident("crate") {
                krate = crate_value(&meta)?;
            } else {
                return Err(unknown(&meta, "service", SERVICE_KEYS));
            }
            Ok(())
        })?;
    }
    let name = name.ok_or_else(|| missing(seen, ident_span, "missing service name: add #[service(name = \"...\")]"))?;
    if name.value().is_empty() {
        return Err(syn::Error::new_spanned(&name, "the service name must not be empty"));
    }
    check_deps(&name, &deps)?;
    Ok(ServiceAttr { name, deps, krate })
}

/// Each dependency once, and not the service itself.
fn check_deps(name: &LitStr, deps: &[LitStr]) -> syn::Result<()> {
    for (i, dep) in deps.iter().enumerate() {
        if dep.value() == name.value() {
            return Err(syn::Error::new_spanned(
                dep,
                format!("`{}` cannot depend on itself: remove it from `deps`", name.value()),
            ));
        }
        if deps[..i].iter().any(|d| d.value() == dep.value()) {
            return Err(syn::Error::new_spanned(
                dep,
                format!("`{}` is listed twice in `deps`: list each dependency once", dep.value()),
            ));
        }
    }
    Ok(())
}

/// `#[migratable(version = N, from = Prev, try_from, down = path)]`.
pub(crate) struct MigratableAttr {
    pub(crate) version: u32,
    pub(crate) version_span: Span,
    pub(crate) from: Option<Path>,
    pub(crate) try_from: Option<Span>,
    pub(crate) down: Option<Path>,
    pub(crate) krate: Krate,
}

const MIGRATABLE_KEYS: &[&str] = &["version", "from", "try_from", "down", "crate"];

pub(crate) fn migratable_attr(attrs: &[Attribute], ident_span: Span) -> syn::Result<MigratableAttr> {
    let mut version = None;
    let mut from = None;
    let mut try_from = None;
    let mut down = None;
    let mut krate = Krate::default();
    let mut seen = None;
    for attr in attrs.iter().filter(|a| a.path().is_ident("migratable")) {
        if seen.replace(attr).is_some() {
            return Err(syn::Error::new_spanned(
                attr,
                "duplicate #[migratable] attribute; merge them into one",
            ));
        }
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("version") {
                version = Some(version_value(&meta)?);
            } else if meta.path.is_ident("from") {
                from = Some(meta.value()?.parse::<Path>()?);
            } else if meta.path.is_ident("try_from") {
                try_from = Some(meta.path.span());
            } else if meta.path.is_ident("down") {
                down = Some(meta.value()?.parse::<Path>()?);
            } else if meta.path.is_ident("crate") {
                krate = crate_value(&meta)?;
            } else {
                return Err(unknown(&meta, "migratable", MIGRATABLE_KEYS));
            }
            Ok(())
        })?;
    }
    let (version, version_span) = version.ok_or_else(|| {
        missing(
            seen,
            ident_span,
            "missing `version`: add #[migratable(version = 1)] (1 for a first version)",
        )
    })?;
    if from.is_none() {
        if let Some(span) = try_from {
            return Err(syn::Error::new(span, "`try_from` needs `from = PreviousVersion`"));
        }
        if let Some(down) = &down {
            return Err(syn::Error::new_spanned(
                down,
                "`down` needs `from = PreviousVersion`: a first version has nothing to roll back to",
            ));
        }
    }
    Ok(MigratableAttr {
        version,
        version_span,
        from,
        try_from,
        down,
        krate,
    })
}

/// An error for a missing key: on the attribute if there is one, else on the type's name.
fn missing(attr: Option<&Attribute>, ident_span: Span, message: &str) -> syn::Error {
    match attr {
        Some(attr) => syn::Error::new_spanned(attr, message),
        None => syn::Error::new(ident_span, message),
    }
}

fn unknown(meta: &ParseNestedMeta<'_>, attr: &str, known: &[&str]) -> syn::Error {
    let path = &meta.path;
    let key = quote::quote!(#path).to_string().replace(' ', "");
    meta.error(unknown_key(attr, &key, known))
}

fn version_value(meta: &ParseNestedMeta<'_>) -> syn::Result<(u32, Span)> {
    let expr = value_expr(meta)?;
    let Expr::Lit(syn::ExprLit { lit: Lit::Int(int), .. }) = &expr else {
        return Err(syn::Error::new_spanned(
            &expr,
            "expected an integer literal, e.g. `version = 2`",
        ));
    };
    let version: u32 = int
        .base10_parse()
        .map_err(|_| syn::Error::new_spanned(int, "the version must fit in a u32"))?;
    if version == 0 {
        return Err(syn::Error::new_spanned(
            int,
            "versions start at 1: use `version = 1` for a first version",
        ));
    }
    Ok((version, int.span()))
}

fn string_value(meta: &ParseNestedMeta<'_>, example: &str) -> syn::Result<LitStr> {
    let expr = value_expr(meta)?;
    match &expr {
        Expr::Lit(syn::ExprLit { lit: Lit::Str(s), .. }) => Ok(s.clone()),
        _ => Err(syn::Error::new_spanned(
            &expr,
            format!("expected a string literal, e.g. `{example}`"),
        )),
    }
}

fn string_list(meta: &ParseNestedMeta<'_>) -> syn::Result<Vec<LitStr>> {
    let expr = value_expr(meta)?;
    let Expr::Array(ExprArray { elems, .. }) = &expr else {
        return Err(syn::Error::new_spanned(
            &expr,
            "expected a list of service names, e.g. `deps = [\"logger\"]`",
        ));
    };
    elems
        .iter()
        .map(|elem| match ungrouped(elem.clone()) {
            Expr::Lit(syn::ExprLit { lit: Lit::Str(s), .. }) => Ok(s),
            other => Err(syn::Error::new_spanned(
                other,
                "expected a string literal naming a service, e.g. \"logger\"",
            )),
        })
        .collect()
}

/// `#[schema(as = Type)]` on a field or a container: the type whose schema stands for it (what
/// its customised encoding encodes as); on a container also `crate = path`.
pub(crate) struct SchemaAttr {
    pub(crate) as_type: Option<syn::Type>,
    pub(crate) krate: Option<Krate>,
}

pub(crate) fn schema_attr(attrs: &[Attribute], container: bool) -> syn::Result<SchemaAttr> {
    let mut out = SchemaAttr {
        as_type: None,
        krate: None,
    };
    let known: &[&str] = if container { &["as", "crate"] } else { &["as"] };
    for attr in attrs.iter().filter(|a| a.path().is_ident("schema")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("as") {
                if out.as_type.is_some() {
                    return Err(meta.error("duplicate `as`: give one type"));
                }
                out.as_type = Some(meta.value()?.parse::<syn::Type>()?);
                Ok(())
            } else if container && meta.path.is_ident("crate") {
                out.krate = Some(crate_value(&meta)?);
                Ok(())
            } else {
                Err(unknown(&meta, "schema", known))
            }
        })?;
    }
    Ok(out)
}

/// The field marked `#[precopy]` (or `#[precopy(start)]`) of a state, if any.
pub(crate) struct PrecopyField {
    /// How the field is reached: its name, or its index in a tuple struct.
    pub(crate) member: syn::Member,
    pub(crate) ty: syn::Type,
    /// `#[precopy(start)]`: pre-copying begins with this version.
    pub(crate) start: bool,
    pub(crate) span: Span,
}

pub(crate) fn precopy_field(input: &syn::DeriveInput) -> syn::Result<Option<PrecopyField>> {
    let fields = match &input.data {
        syn::Data::Struct(data) => &data.fields,
        _ => {
            return match precopy_attrs_anywhere(input) {
                Some(attr) => Err(syn::Error::new_spanned(
                    attr,
                    "#[precopy] marks a field of a struct; an enum's variants cannot be pre-copied",
                )),
                None => Ok(None),
            };
        }
    };
    let mut found: Option<PrecopyField> = None;
    for (index, field) in fields.iter().enumerate() {
        for attr in field.attrs.iter().filter(|a| a.path().is_ident("precopy")) {
            if found.is_some() {
                return Err(syn::Error::new_spanned(
                    attr,
                    "a state has at most one #[precopy] field: keep the other maps as they are, they cross in the pause",
                ));
            }
            let mut start = false;
            if let syn::Meta::NameValue(_) = &attr.meta {
                return Err(syn::Error::new_spanned(
                    attr,
                    "write #[precopy] or #[precopy(start)]; #[precopy = ...] means neither",
                ));
            }
            if let syn::Meta::List(_) = &attr.meta {
                attr.parse_nested_meta(|meta| {
                    if meta.path.is_ident("start") {
                        start = true;
                        Ok(())
                    } else {
                        Err(unknown(&meta, "precopy", &["start"]))
                    }
                })?;
            }
            let member = match &field.ident {
                Some(ident) => syn::Member::Named(ident.clone()),
                None => syn::Member::Unnamed(syn::Index::from(index)),
            };
            found = Some(PrecopyField {
                member,
                ty: field.ty.clone(),
                start,
                span: attr.span(),
            });
        }
    }
    Ok(found)
}

/// A `#[precopy]` on an enum's variant field, for the error.
fn precopy_attrs_anywhere(input: &syn::DeriveInput) -> Option<&Attribute> {
    let syn::Data::Enum(data) = &input.data else {
        return None;
    };
    data.variants
        .iter()
        .flat_map(|v| v.fields.iter())
        .flat_map(|f| f.attrs.iter())
        .find(|a| a.path().is_ident("precopy"))
}
