//! Reads a mapping file: TOML syntax and type errors with their line, and every unknown key at once with a
//! suggestion taken from the mapping's own JSON Schema (one source of truth for the key names).

use std::path::Path;

use crate::error::{hint, FatalError, SpecErrors};
use crate::spec::Mapping;

/// A mapping file as loaded: the parsed spec, its text and its BLAKE3.
pub struct LoadedMapping {
    pub mapping: Mapping,
    pub text: String,
    pub blake3: String,
}

/// Loads and parses a mapping file; unknown keys are all reported together.
pub fn load(path: &Path) -> Result<LoadedMapping, FatalError> {
    let bytes = std::fs::read(path).map_err(|e| FatalError::io(path, e))?;
    let blake3 = blake3::hash(&bytes).to_hex().to_string();
    let text = String::from_utf8(bytes).map_err(|e| {
        FatalError::Usage(format!(
            "{}: byte {}: a mapping file must be UTF-8",
            path.display(),
            e.utf8_error().valid_up_to()
        ))
    })?;
    let mut mapping = parse(&text).map_err(FatalError::Spec)?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut errors = SpecErrors::default();
    for (i, e) in mapping.entities.iter_mut().enumerate() {
        for (j, f) in e.fields.iter_mut().enumerate() {
            if let Some(l) = f.lookup.clone() {
                let at = format!("entities[{i}].fields[{j}].lookup");
                match read_lookup(&base.join(&l.path), &l) {
                    Ok(table) => {
                        let map = f.map.get_or_insert_with(Default::default);
                        for (k, v) in table {
                            map.entry(k).or_insert(v);
                        }
                    }
                    Err(msg) => errors.push(at, msg),
                }
            }
        }
    }
    reference_types(&mut mapping, &mut errors);
    if !errors.is_empty() {
        return Err(FatalError::Spec(errors));
    }
    Ok(LoadedMapping {
        mapping,
        text,
        blake3,
    })
}

/// A reference's value is matched against the parent's `by` field, so it is cast as that field is: a
/// reference left as `text` takes the `by` field's type; another type must be the same one.
fn reference_types(mapping: &mut crate::spec::Mapping, errors: &mut SpecErrors) {
    let parents = mapping.entities.clone();
    for (i, e) in mapping.entities.iter_mut().enumerate() {
        for (j, f) in e.fields.iter_mut().enumerate() {
            let Some(r) = &f.references else { continue };
            let Some(p) = parents.iter().find(|p| p.name == r.entity) else {
                continue;
            };
            let Some(by) = r.by.as_ref().or(p.primary_key.first()) else {
                continue;
            };
            let Some(bf) = p.fields.iter().find(|x| &x.name == by) else {
                continue;
            };
            let ty = |t: &str| crate::types::FieldType::parse(t).ok();
            if f.type_name == "text" {
                f.type_name = bf.type_name.clone();
            } else if ty(&f.type_name) != ty(&bf.type_name) {
                errors.push(
                    format!("entities[{i}].fields[{j}].type"),
                    format!(
                        "a reference is matched as {}.{by} ({}): give that type or leave `type` out",
                        r.entity, bf.type_name
                    ),
                );
            }
        }
    }
}

/// Reads a lookup file into key -> value pairs. A key listed twice with different values is an error:
/// which value is meant would be unclear.
fn read_lookup(
    path: &Path,
    l: &crate::spec::Lookup,
) -> Result<std::collections::BTreeMap<String, String>, String> {
    let shown = path.display();
    let mut r = csv::Reader::from_path(path).map_err(|e| format!("{shown}: {e}"))?;
    let header = r.headers().map_err(|e| format!("{shown}: {e}"))?.clone();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h.trim_start_matches('\u{feff}') == name)
            .ok_or_else(|| {
                format!(
                    "{shown}: no column {name:?}{}",
                    crate::error::hint(name, header.iter())
                )
            })
    };
    let (k, v) = (col(&l.key)?, col(&l.value)?);
    let mut table = std::collections::BTreeMap::new();
    for (n, rec) in r.records().enumerate() {
        let rec = rec.map_err(|e| format!("{shown}: {e}"))?;
        let (Some(key), Some(value)) = (rec.get(k), rec.get(v)) else {
            return Err(format!("{shown}: row {} has too few fields", n + 1));
        };
        if let Some(prev) = table.insert(key.to_string(), value.to_string()) {
            if prev != value {
                return Err(format!(
                    "{shown}: row {}: key {key:?} is listed twice, with {prev:?} and {value:?}",
                    n + 1
                ));
            }
        }
    }
    Ok(table)
}

/// Parses mapping text. Syntax and type errors stop at the first; unknown keys are collected.
pub fn parse(text: &str) -> Result<Mapping, SpecErrors> {
    let mut errors = SpecErrors::default();
    let de = toml::de::Deserializer::parse(text).map_err(|e| {
        let mut errs = SpecErrors::default();
        errs.push("", format!("TOML syntax: {}", e.to_string().trim_end()));
        errs
    })?;
    let mut unknown = Vec::new();
    let result: Result<Mapping, _> =
        serde_ignored::deserialize(de, |p| unknown.push(p.to_string()));
    let schema: serde_json::Value =
        serde_json::to_value(schemars::schema_for!(Mapping)).unwrap_or_default();
    for key in &unknown {
        let (parent, last) = match key.rsplit_once('.') {
            Some((p, l)) => (p, l),
            None => ("", key.as_str()),
        };
        let known = known_keys(&schema, parent);
        errors.push(
            display_path(key),
            format!(
                "unknown key {last:?}{}",
                hint(last, known.iter().map(String::as_str))
            ),
        );
    }
    match result {
        Ok(m) if errors.is_empty() => Ok(m),
        Ok(_) => Err(errors),
        Err(e) => {
            errors.push("", e.to_string().trim_end().to_string());
            Err(errors)
        }
    }
}

/// `entities.0.fields.3.colum` -> `entities[0].fields[3].colum`.
fn display_path(p: &str) -> String {
    let mut out = String::new();
    for seg in p.split('.') {
        if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(seg);
        }
    }
    out
}

/// The property names the schema allows at a dotted path (array indices and map keys step inside).
fn known_keys(schema: &serde_json::Value, path: &str) -> Vec<String> {
    let mut node = resolve(schema, schema);
    for seg in path.split('.').filter(|s| !s.is_empty()) {
        let next = if let Some(p) = node.get("properties").and_then(|p| p.get(seg)) {
            p
        } else if let Some(items) = node.get("items") {
            items
        } else if let Some(ap) = node.get("additionalProperties").filter(|v| v.is_object()) {
            ap
        } else {
            return Vec::new();
        };
        node = resolve(schema, next);
    }
    node.get("properties")
        .and_then(|p| p.as_object())
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

/// Follows `$ref` and picks the object-like branch of `anyOf`/`oneOf` (as schemars writes `Option<T>`).
fn resolve<'a>(
    root: &'a serde_json::Value,
    mut node: &'a serde_json::Value,
) -> &'a serde_json::Value {
    for _ in 0..16 {
        if let Some(r) = node.get("$ref").and_then(|r| r.as_str()) {
            let Some(name) = r.strip_prefix("#/$defs/") else {
                return node;
            };
            match root.get("$defs").and_then(|d| d.get(name)) {
                Some(n) => node = n,
                None => return node,
            }
            continue;
        }
        let branch = ["anyOf", "oneOf"].iter().find_map(|k| {
            node.get(*k)?.as_array()?.iter().find(|b| {
                b.get("$ref").is_some() || b.get("properties").is_some() || b.get("items").is_some()
            })
        });
        match branch {
            Some(b) => node = b,
            None => return node,
        }
    }
    node
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_unknown_key_is_reported_with_a_suggestion() {
        let text = r#"
            [sources.c]
            path = "c.csv"
            encodng = "utf-8"
            [sources.c.csv]
            delimeter = ";"
            [[entities]]
            name = "contact"
            source = "c"
            [[entities.fields]]
            name = "id"
            colum = "Id"
        "#;
        let errs = parse(text).unwrap_err();
        let all = errs.to_string();
        assert!(
            all.contains("sources.c.encodng: unknown key \"encodng\"; did you mean \"encoding\"?"),
            "{all}"
        );
        assert!(
            all.contains(
                "sources.c.csv.delimeter: unknown key \"delimeter\"; did you mean \"delimiter\"?"
            ),
            "{all}"
        );
        assert!(
            all.contains(
                "entities[0].fields[0].colum: unknown key \"colum\"; did you mean \"column\"?"
            ),
            "{all}"
        );
        assert_eq!(errs.0.len(), 3);
    }

    #[test]
    fn syntax_errors_carry_a_line() {
        let errs = parse("[sources.c]\npath = \n").unwrap_err();
        assert!(errs.to_string().contains("line 2"), "{errs}");
    }
}
