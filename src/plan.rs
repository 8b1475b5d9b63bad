//! Compiles a mapping against a source header into a plan: column indices, compiled casts, regexes and
//! value maps. Per-record code never looks a name up or reads a format string. Compiling also validates:
//! every problem is collected with its key path, so `crm-etl check` can show them all at once.

use std::collections::HashMap;

use regex::Regex;

use crate::cast::{BoolWords, NumberFormat};
use crate::datetime::{Kind, TemporalCast};
use crate::error::{hint, SpecErrors};
use crate::read::json::JsonPaths;
use crate::read::xml::XmlPaths;
use std::sync::Arc;

use crate::relate::KeyIndex;
use crate::spec::{
    Entity, Field, Formats, Generate, InputFormat, Orphans, OutputFormat, Ragged, Source,
    Transform, Unmapped,
};
use crate::types::FieldType;

/// Where a field's value comes from.
#[derive(Debug, Clone)]
pub enum Input {
    /// A column, by index in the header.
    Column(usize),
    /// The same text for every record.
    Const(String),
    /// Text and columns, concatenated.
    Template(Vec<Part>),
    /// Nested entities: a column of the enclosing record, by index in the parent columns.
    Parent(usize),
    /// Nested entities: the child's position among its siblings, from 1.
    Ordinal,
    /// The record's number in its source, over all its files.
    Sequence,
    /// A stable hash of these columns.
    Hash(Vec<usize>),
}

/// A piece of a template.
#[derive(Debug, Clone)]
pub enum Part {
    Lit(String),
    Col(usize),
}

/// A compiled cleaning step.
#[derive(Debug, Clone)]
pub enum Step {
    Trim,
    Lower,
    Upper,
    CollapseWhitespace,
    HtmlDecode,
    Replace(Regex, String),
}

/// How a record's column values are found: CSV fields by position, JSON and XML values by path (parsed in
/// the parallel stage).
#[derive(Debug, Clone)]
pub enum Extract {
    Csv,
    Json(JsonPaths),
    Xml(XmlPaths),
}

/// XML output names, checked and made valid once.
#[derive(Debug, Clone)]
pub struct XmlOut {
    pub root: String,
    pub record: String,
    pub fields: Vec<String>,
}

/// An XML element name for any text: invalid characters become `_`, and a name that cannot start an
/// element gets a leading `_`.
pub fn xml_name(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty()
        || !out.starts_with(|c: char| c.is_alphabetic() || c == '_')
        || out.to_ascii_lowercase().starts_with("xml")
    {
        out.insert(0, '_');
    }
    out
}

/// XML output names for fields, unique after cleaning (`a b` and `a_b` become `a_b` and `a_b_2`).
pub fn xml_out(root: Option<&str>, record: Option<&str>, names: &[String]) -> XmlOut {
    let mut fields: Vec<String> = Vec::with_capacity(names.len());
    for n in names {
        let base = xml_name(n);
        let mut name = base.clone();
        let mut k = 2;
        while fields.contains(&name) {
            name = format!("{base}_{k}");
            k += 1;
        }
        fields.push(name);
    }
    XmlOut {
        root: xml_name(root.unwrap_or("records")),
        record: xml_name(record.unwrap_or("record")),
        fields,
    }
}

/// The columns of the enclosing record that a nested entity reads (its `parent` fields and the `split`
/// field), in order of first use.
pub fn parent_columns(entity: &Entity) -> Vec<String> {
    let mut cols: Vec<String> = Vec::new();
    let split = entity.nested.as_ref().and_then(|n| n.split.as_deref());
    for c in split
        .into_iter()
        .chain(entity.fields.iter().filter_map(|f| f.parent.as_deref()))
    {
        if !cols.iter().any(|x| x == c) {
            cols.push(c.to_string());
        }
    }
    cols
}

/// The columns an entity reads, in order of first use: the "header" of a JSON or XML source (of the
/// child element, for a nested entity).
pub fn columns_used(entity: &Entity) -> Vec<String> {
    let mut cols: Vec<String> = Vec::new();
    let mut add = |c: &str| {
        if !cols.iter().any(|x| x == c) {
            cols.push(c.to_string());
        }
    };
    for f in &entity.fields {
        if let Some(c) = &f.column {
            add(c);
        }
        if let Some(crate::spec::Generate::Hash(cs)) = &f.generate {
            for c in cs {
                add(c);
            }
        }
        if let Some(Ok(parts)) = f.template.as_deref().map(parse_template) {
            for p in parts {
                if let TemplatePart::Col(c) = p {
                    add(&c);
                }
            }
        }
    }
    cols
}

/// A compiled cast.
#[derive(Debug, Clone)]
pub enum Cast {
    Text,
    Integer(NumberFormat),
    Decimal {
        precision: u8,
        scale: u8,
        round: bool,
        nf: NumberFormat,
    },
    Float(NumberFormat),
    Boolean(BoolWords),
    Temporal(Box<TemporalCast>),
    Uuid,
    Json,
}

/// One compiled target field.
#[derive(Debug, Clone)]
pub struct FieldPlan {
    pub name: String,
    pub ty: FieldType,
    pub input: Input,
    pub steps: Vec<Step>,
    pub map: Option<HashMap<String, String>>,
    pub unmapped: Unmapped,
    pub default: Option<String>,
    pub required: bool,
    pub cast: Cast,
    pub max_length: Option<usize>,
    pub pattern: Option<Regex>,
    pub reference: Option<RefPlan>,
}

impl FieldPlan {
    /// A text field copied from column `col` as it is (what `convert` writes).
    pub fn text_column(name: &str, col: usize) -> FieldPlan {
        FieldPlan {
            name: name.to_string(),
            ty: FieldType::Text,
            input: Input::Column(col),
            steps: Vec::new(),
            map: None,
            unmapped: crate::spec::Unmapped::Keep,
            default: None,
            required: false,
            cast: Cast::Text,
            max_length: None,
            pattern: None,
            reference: None,
        }
    }

    /// The type of the written value: a reference is written as its parent's primary-key type.
    pub fn out_ty(&self) -> FieldType {
        self.reference.as_ref().map_or(self.ty, |r| r.out_ty)
    }
}

/// A compiled reference: the parent's index is attached once the parent has run.
#[derive(Clone)]
pub struct RefPlan {
    pub entity: String,
    pub orphans: Orphans,
    pub salesforce_ids: bool,
    /// Written as null; the value goes to the entity's updates, resolved after every entity has run.
    pub defer: bool,
    /// Type of the parent's primary key, which a matched value is written as.
    pub out_ty: FieldType,
    pub index: Option<Arc<KeyIndex>>,
}

impl std::fmt::Debug for RefPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RefPlan({}, {:?})", self.entity, self.orphans)
    }
}

/// A field of this entity that other entities reference: its values are indexed to the primary key.
#[derive(Debug, Clone)]
pub struct IndexBy {
    pub field: usize,
    /// Also index 18-character Salesforce ids under their 15-character form.
    pub salesforce_ids: bool,
    /// Store the primary key text: not needed when the field is the primary key and ids are matched
    /// exactly, since a match then writes the value itself.
    pub store_target: bool,
}

/// Fields whose values, together, must not repeat.
#[derive(Debug, Clone)]
pub struct UniqueSet {
    /// `primary key (a, b)` or `unique field "email"`, for messages.
    pub label: String,
    pub fields: Vec<usize>,
}

/// A source's null tokens. Their lengths are kept as a bit set, so that a value no token is as long as
/// (nearly every value) is told apart by one test: comparing each field with each token was 3 % of a
/// run's instructions.
#[derive(Debug, Clone, Default)]
pub struct NullTokens {
    tokens: Vec<String>,
    /// Bit `n` is set when a token has `n` bytes; bit 63 stands for every length from 63 on.
    lens: u64,
}

impl NullTokens {
    pub fn new(tokens: &[String]) -> NullTokens {
        NullTokens {
            tokens: tokens.to_vec(),
            lens: tokens.iter().fold(0, |m, t| m | 1 << t.len().min(63)),
        }
    }

    /// Whether `s` is one of the tokens.
    #[inline]
    pub fn contains(&self, s: &str) -> bool {
        if self.lens & (1 << s.len().min(63)) == 0 {
            return false;
        }
        // An empty value matches only the empty token, whose length bit is the one just tested.
        s.is_empty() || self.tokens.iter().any(|t| t == s)
    }
}

/// Everything needed to map one entity's records, resolved against one header.
#[derive(Debug, Clone)]
pub struct EntityPlan {
    pub name: String,
    pub source: String,
    pub format: OutputFormat,
    /// Further output formats, encoded from the same rows into `MappedChunk::also`.
    pub also: Vec<OutputFormat>,
    pub fields: Vec<FieldPlan>,
    pub unique: Vec<UniqueSet>,
    pub header: Vec<String>,
    pub ragged: Ragged,
    pub null: NullTokens,
    /// Write empty strings as `""` in CSV so they differ from null (off for `convert`, which has no nulls).
    pub quote_empty: bool,
    /// Any reject is a fatal error (for `convert`, which has no rejects file).
    pub strict: bool,
    pub extract: Extract,
    /// Set for XML output.
    pub xml: Option<XmlOut>,
    /// Fields indexed for the entities that reference this one, and the primary key field they map to.
    pub index_by: Vec<IndexBy>,
    pub pk_field: Option<usize>,
    /// Fields of the primary key when the run records its rows' state (see `since`): each written
    /// row's key goes into `MappedChunk::track_keys`.
    pub track: Option<Vec<usize>>,
    /// Records of the source's earlier files: `generate = "sequence"` numbers continue across files.
    pub seq_base: u64,
    /// Set for a nested entity.
    pub nested: Option<NestedPlan>,
    /// Fields whose reference is deferred (written null, set by an update later).
    pub deferred: Vec<usize>,
    /// Load targets' data files, and the type each field is written as (a reference: its parent key's).
    pub targets: Vec<crate::target::TargetOut>,
    pub target_types: Vec<FieldType>,
    /// Reject text holding NUL (PostgreSQL is a target).
    pub no_nul: bool,
    /// Hash each written row into the entity's digest.
    pub digest: bool,
}

/// How a nested entity finds its children in a record of its source, and reads the record's own columns.
#[derive(Debug, Clone)]
pub struct NestedPlan {
    pub children: Children,
    /// Extraction of the parent columns (see [`parent_columns`]) from the record.
    pub outer: Extract,
}

/// Where the children of a record are.
#[derive(Debug, Clone)]
pub enum Children {
    /// JSON: elements of the array at this key path.
    Json(Vec<String>),
    /// XML: elements at this path, whose first step is the record element itself.
    Xml(Vec<String>),
    /// Parts of a parent column's value.
    Split { column: usize, separator: String },
}

/// Whether an entity or output name is safe as a file name everywhere (and in `checksums.b3`).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

/// Compiles an entity. `header` is `None` when the source could not be opened: column names are then not
/// checked. `at` is the key path of the entity (`entities[0]`).
pub fn compile_entity(
    entity: &Entity,
    source: &Source,
    header: Option<&[String]>,
    file_label: &str,
    at: &str,
    errors: &mut SpecErrors,
) -> Option<EntityPlan> {
    let before = errors.0.len();
    if !valid_name(&entity.name) {
        errors.push(
            format!("{at}.name"),
            format!(
                "{:?} is not a usable table name: use letters, digits, `_`, `-` and `.`",
                entity.name
            ),
        );
    }
    if entity.fields.is_empty() {
        errors.push(format!("{at}.fields"), "an entity needs at least one field");
    }
    let nested = entity
        .nested
        .as_ref()
        .map(|n| nested_headers(n, source, entity, header, at, errors));
    let mut fields = Vec::new();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (j, f) in entity.fields.iter().enumerate() {
        let fat = format!("{at}.fields[{j}]");
        if let Some(prev) = seen.insert(f.name.as_str(), j) {
            errors.push(
                format!("{fat}.name"),
                format!("field {:?} is already defined at fields[{prev}]", f.name),
            );
        }
        if f.name.is_empty() {
            errors.push(format!("{fat}.name"), "a field needs a name");
        }
        let required = f.required || entity.primary_key.contains(&f.name);
        let parent = nested.as_ref().map(|n| n.parent_header.as_deref());
        if let Some(fp) = compile_field(
            f,
            required,
            nested
                .as_ref()
                .map_or(header, |n| n.inner_header.as_deref()),
            parent,
            file_label,
            &fat,
            errors,
        ) {
            fields.push(fp);
        }
    }
    let mut unique = Vec::new();
    if !entity.primary_key.is_empty() {
        let mut idx = Vec::new();
        for k in &entity.primary_key {
            match entity.fields.iter().position(|f| &f.name == k) {
                Some(i) => idx.push(i),
                None => errors.push(
                    format!("{at}.primary_key"),
                    format!(
                        "no field named {k:?}{}",
                        hint(k, entity.fields.iter().map(|f| f.name.as_str()))
                    ),
                ),
            }
        }
        unique.push(UniqueSet {
            label: format!("primary key ({})", entity.primary_key.join(", ")),
            fields: idx,
        });
    }
    for (i, f) in entity.fields.iter().enumerate() {
        if f.unique && !(entity.primary_key.len() == 1 && entity.primary_key[0] == f.name) {
            unique.push(UniqueSet {
                label: format!("unique field {:?}", f.name),
                fields: vec![i],
            });
        }
    }
    let cols = header.map(<[String]>::to_vec).unwrap_or_default();
    let extract = extract_for(source.format, &cols, &format!("{at}.fields"), errors);
    let nested = nested.map(|n| {
        let outer = extract_for(
            source.format,
            n.parent_header.as_deref().unwrap_or_default(),
            &format!("{at}.fields"),
            errors,
        );
        NestedPlan {
            children: n.children,
            outer,
        }
    });
    let formats = entity
        .format
        .as_ref()
        .map(Formats::list)
        .unwrap_or_default();
    let format = formats.first().copied().unwrap_or_default();
    let xml = formats.contains(&OutputFormat::Xml).then(|| {
        let names: Vec<String> = entity.fields.iter().map(|f| f.name.clone()).collect();
        xml_out(
            entity.xml_root.as_deref(),
            entity.xml_record.as_deref(),
            &names,
        )
    });
    if errors.0.len() > before {
        return None;
    }
    Some(EntityPlan {
        name: entity.name.clone(),
        source: entity.source.clone(),
        format,
        fields,
        unique,
        header: header.map(<[String]>::to_vec).unwrap_or_default(),
        ragged: source.csv.ragged,
        null: NullTokens::new(&source.null),
        quote_empty: true,
        strict: false,
        extract,
        xml,
        index_by: Vec::new(),
        track: None,
        also: formats
            .get(1..)
            .map(<[OutputFormat]>::to_vec)
            .unwrap_or_default(),
        pk_field: (entity.primary_key.len() == 1)
            .then(|| {
                entity
                    .fields
                    .iter()
                    .position(|f| f.name == entity.primary_key[0])
            })
            .flatten(),
        seq_base: 0,
        nested,
        deferred: entity
            .fields
            .iter()
            .enumerate()
            .filter(|(_, f)| f.references.as_ref().is_some_and(|r| r.defer))
            .map(|(i, _)| i)
            .collect(),
        targets: Vec::new(),
        target_types: Vec::new(),
        no_nul: false,
        digest: true,
    })
}

fn extract_for(format: InputFormat, cols: &[String], at: &str, errors: &mut SpecErrors) -> Extract {
    match format {
        InputFormat::Csv => Extract::Csv,
        InputFormat::Json | InputFormat::Jsonl => Extract::Json(JsonPaths::new(cols, false)),
        InputFormat::Xml => match XmlPaths::new(cols, false) {
            Ok(p) => Extract::Xml(p),
            Err(e) => {
                errors.push(at, e);
                Extract::Csv
            }
        },
    }
}

/// The column spaces of a nested entity: the child's (None when unknown) and the enclosing record's.
struct NestedHeaders {
    inner_header: Option<Vec<String>>,
    parent_header: Option<Vec<String>>,
    children: Children,
}

fn nested_headers(
    n: &crate::spec::Nested,
    source: &Source,
    entity: &Entity,
    header: Option<&[String]>,
    at: &str,
    errors: &mut SpecErrors,
) -> NestedHeaders {
    // A CSV record's columns are its header's; a JSON or XML record's are the paths the entity reads.
    let parent_header = match source.format {
        InputFormat::Csv => header.map(<[String]>::to_vec),
        _ => Some(parent_columns(entity)),
    };
    let inner_header = if n.split.is_some() {
        Some(vec!["value".to_string()])
    } else {
        header.map(<[String]>::to_vec)
    };
    let children = match (&n.path, &n.split, source.format) {
        (Some(_), Some(_), _) | (None, None, _) => {
            errors.push(
                format!("{at}.nested"),
                "give exactly one of `path` (a nested array or repeated element) and `split` (a multi-value field)",
            );
            Children::Json(Vec::new())
        }
        (None, Some(col), _) => {
            if n.separator.is_empty() {
                errors.push(format!("{at}.nested.separator"), "must not be empty");
            }
            let column = match &parent_header {
                Some(h) => column_index(
                    col,
                    Some(h),
                    "the record",
                    &format!("{at}.nested.split"),
                    errors,
                ),
                None => 0,
            };
            Children::Split {
                column,
                separator: n.separator.clone(),
            }
        }
        (Some(_), None, InputFormat::Csv) => {
            errors.push(
                format!("{at}.nested.path"),
                "a CSV record has nothing nested: use `split` for a multi-value field",
            );
            Children::Json(Vec::new())
        }
        (Some(p), None, InputFormat::Json | InputFormat::Jsonl) => {
            let path = crate::read::json::split_path(p);
            if path.is_empty() {
                errors.push(format!("{at}.nested.path"), "must name a key path");
            }
            Children::Json(path)
        }
        (Some(p), None, InputFormat::Xml) => {
            // The splitter walks from the document root, which for one record is the record element.
            let record = source
                .record_path
                .as_deref()
                .map(crate::read::xml::split_path)
                .and_then(|v| v.last().cloned())
                .unwrap_or_default();
            let rel = crate::read::xml::split_path(p);
            if rel.is_empty() {
                errors.push(format!("{at}.nested.path"), "must name an element path");
            }
            let mut path = vec![record];
            path.extend(rel);
            if let Err(e) = crate::read::xml::check_path(&path) {
                errors.push(format!("{at}.nested.path"), e);
            }
            Children::Xml(path)
        }
    };
    NestedHeaders {
        inner_header,
        parent_header,
        children,
    }
}

fn column_index(
    name: &str,
    header: Option<&[String]>,
    file_label: &str,
    key: &str,
    errors: &mut SpecErrors,
) -> usize {
    let Some(header) = header else { return 0 };
    match header.iter().position(|h| h == name) {
        Some(i) => {
            let count = header.iter().filter(|h| *h == name).count();
            if count > 1 {
                errors.push(
                    key,
                    format!("column {name:?} appears {count} times in the header of {file_label}, so it is ambiguous"),
                );
            }
            i
        }
        None => {
            errors.push(
                key,
                format!(
                    "unknown column {name:?} in the header of {file_label}{}",
                    hint(name, header.iter().map(String::as_str))
                ),
            );
            0
        }
    }
}

/// `parent`: None for an entity that is not nested, else the columns of the enclosing record (None when
/// they are not known).
#[allow(clippy::too_many_arguments)]
fn compile_field(
    f: &Field,
    required: bool,
    header: Option<&[String]>,
    parent: Option<Option<&[String]>>,
    file_label: &str,
    at: &str,
    errors: &mut SpecErrors,
) -> Option<FieldPlan> {
    let before = errors.0.len();
    let sources = [
        f.column.is_some(),
        f.value.is_some(),
        f.template.is_some(),
        f.parent.is_some(),
        f.ordinal,
        f.generate.is_some(),
    ];
    let col = |c: &str, key: &str, errors: &mut SpecErrors| {
        column_index(c, header, file_label, &format!("{at}.{key}"), errors)
    };
    let input = if sources.iter().filter(|s| **s).count() != 1 {
        errors.push(
            at.to_string(),
            format!(
                "field {:?} needs exactly one of `column`, `value`, `template`, `parent`, `ordinal` and `generate`",
                f.name
            ),
        );
        Input::Const(String::new())
    } else if let Some(c) = &f.column {
        Input::Column(col(c, "column", errors))
    } else if let Some(v) = &f.value {
        Input::Const(v.clone())
    } else if let Some(p) = &f.parent {
        match parent {
            None => {
                errors.push(
                    format!("{at}.parent"),
                    "`parent` reads the enclosing record of a nested entity; this entity has no `nested`",
                );
                Input::Const(String::new())
            }
            Some(cols) => Input::Parent(column_index(
                p,
                cols,
                file_label,
                &format!("{at}.parent"),
                errors,
            )),
        }
    } else if f.ordinal {
        if parent.is_none() {
            errors.push(
                format!("{at}.ordinal"),
                "`ordinal` numbers the children of a nested entity; this entity has no `nested`",
            );
        }
        Input::Ordinal
    } else if let Some(g) = &f.generate {
        match g {
            Generate::Sequence => {
                if parent.is_some() {
                    errors.push(
                        format!("{at}.generate"),
                        "a nested entity has no record numbers of its own: key it by its parent's key and `ordinal`",
                    );
                }
                Input::Sequence
            }
            Generate::Hash(cols) if cols.is_empty() => {
                errors.push(
                    format!("{at}.generate.hash"),
                    "name the columns of the natural key to hash",
                );
                Input::Hash(Vec::new())
            }
            Generate::Hash(cols) => Input::Hash(
                cols.iter()
                    .map(|c| col(c, "generate.hash", errors))
                    .collect(),
            ),
        }
    } else {
        match parse_template(f.template.as_deref().unwrap_or_default()) {
            Ok(parts) => Input::Template(
                parts
                    .into_iter()
                    .map(|p| match p {
                        TemplatePart::Lit(s) => Part::Lit(s),
                        TemplatePart::Col(c) => Part::Col(col(&c, "template", errors)),
                    })
                    .collect(),
            ),
            Err(e) => {
                errors.push(format!("{at}.template"), e);
                Input::Const(String::new())
            }
        }
    };
    let ty = match FieldType::parse(&f.type_name) {
        Ok(t) => t,
        Err(e) => {
            errors.push(format!("{at}.type"), e);
            FieldType::Text
        }
    };
    let nf = number_format(f, at, errors);
    let only = |errors: &mut SpecErrors, key: &str, set: bool, ok: bool, types: &str| {
        if set && !ok {
            errors.push(
                format!("{at}.{key}"),
                format!("`{key}` applies only to {types}, not to {ty}"),
            );
        }
    };
    let numeric = matches!(
        ty,
        FieldType::Integer | FieldType::Decimal { .. } | FieldType::Float
    );
    only(
        errors,
        "formats",
        f.formats.is_some(),
        ty.is_temporal(),
        "date and time types",
    );
    only(
        errors,
        "timezone",
        f.timezone.is_some(),
        ty == FieldType::TimestampTz,
        "timestamptz",
    );
    only(
        errors,
        "true_values",
        f.true_values.is_some(),
        ty == FieldType::Boolean,
        "boolean",
    );
    only(
        errors,
        "false_values",
        f.false_values.is_some(),
        ty == FieldType::Boolean,
        "boolean",
    );
    only(
        errors,
        "decimal_separator",
        f.decimal_separator.is_some(),
        numeric,
        "numbers",
    );
    only(
        errors,
        "thousands_separator",
        f.thousands_separator.is_some(),
        numeric,
        "numbers",
    );
    only(
        errors,
        "round",
        f.round,
        matches!(ty, FieldType::Decimal { .. }),
        "decimal",
    );
    let cast = match ty {
        FieldType::Text => Cast::Text,
        FieldType::Integer => Cast::Integer(nf),
        FieldType::Decimal { precision, scale } => Cast::Decimal {
            precision,
            scale,
            round: f.round,
            nf,
        },
        FieldType::Float => Cast::Float(nf),
        FieldType::Boolean => {
            let mut w = BoolWords::default();
            if let Some(t) = &f.true_values {
                w.truthy = t.clone();
            }
            if let Some(fv) = &f.false_values {
                w.falsy = fv.clone();
            }
            let lower = |v: &[String]| v.iter().map(|s| s.to_lowercase()).collect::<Vec<_>>();
            if lower(&w.truthy).iter().any(|t| lower(&w.falsy).contains(t)) {
                errors.push(
                    format!("{at}.true_values"),
                    "a word is both a true and a false value",
                );
            }
            Cast::Boolean(w)
        }
        FieldType::Date | FieldType::Time | FieldType::Timestamp | FieldType::TimestampTz => {
            let kind = match ty {
                FieldType::Date => Kind::Date,
                FieldType::Time => Kind::Time,
                FieldType::Timestamp => Kind::Timestamp,
                _ => Kind::TimestampTz,
            };
            let formats: Vec<String> = match &f.formats {
                Some(v) if v.is_empty() => {
                    errors.push(
                        format!("{at}.formats"),
                        "give at least one format, or leave `formats` out",
                    );
                    Vec::new()
                }
                Some(v) => v.clone(),
                None => TemporalCast::default_formats(kind)
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            };
            match TemporalCast::compile(kind, &formats, f.timezone.as_deref(), f.ambiguous) {
                Ok(c) => Cast::Temporal(Box::new(c)),
                Err(es) => {
                    for e in es {
                        errors.push(format!("{at}.formats"), e);
                    }
                    Cast::Text
                }
            }
        }
        FieldType::Uuid => Cast::Uuid,
        FieldType::Json => Cast::Json,
    };
    let mut steps = Vec::new();
    for (k, t) in f.transforms.iter().enumerate() {
        steps.push(match t {
            Transform::Trim => Step::Trim,
            Transform::Lower => Step::Lower,
            Transform::Upper => Step::Upper,
            Transform::CollapseWhitespace => Step::CollapseWhitespace,
            Transform::HtmlDecode => Step::HtmlDecode,
            Transform::RegexReplace {
                pattern,
                replacement,
            } => match Regex::new(pattern) {
                Ok(re) => Step::Replace(re, replacement.clone()),
                Err(e) => {
                    errors.push(
                        format!("{at}.transforms[{k}].regex_replace.pattern"),
                        format!("bad regular expression: {e}"),
                    );
                    continue;
                }
            },
        });
    }
    let pattern = f
        .pattern
        .as_ref()
        .and_then(|p| match Regex::new(&format!("^(?:{p})$")) {
            Ok(re) => Some(re),
            Err(e) => {
                errors.push(
                    format!("{at}.pattern"),
                    format!("bad regular expression: {e}"),
                );
                None
            }
        });
    if f.unmapped != Unmapped::Reject && f.map.is_none() {
        errors.push(format!("{at}.unmapped"), "`unmapped` needs a value `map`");
    }
    if f.unmapped == Unmapped::Default && f.default.is_none() {
        errors.push(
            format!("{at}.default"),
            "unmapped = \"default\" needs a `default` value",
        );
    }
    if f.max_length == Some(0) {
        errors.push(format!("{at}.max_length"), "must be at least 1");
    }
    match (&f.generate, ty) {
        (Some(Generate::Sequence), t) if t != FieldType::Integer => errors.push(
            format!("{at}.type"),
            format!("generate = \"sequence\" makes integers; the field's type is {t}"),
        ),
        (Some(Generate::Hash(_)), t)
            if !matches!(t, FieldType::Integer | FieldType::Uuid | FieldType::Text) =>
        {
            errors.push(
                format!("{at}.type"),
                format!("a hash key is an integer, a uuid or text; the field's type is {t}"),
            )
        }
        _ => {}
    }
    let plan = FieldPlan {
        name: f.name.clone(),
        ty,
        input,
        steps,
        map: f
            .map
            .as_ref()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
        unmapped: f.unmapped,
        default: f.default.clone(),
        required,
        cast,
        max_length: f.max_length,
        pattern,
        reference: f.references.as_ref().map(|r| RefPlan {
            entity: r.entity.clone(),
            orphans: r.orphans,
            salesforce_ids: r.salesforce_ids,
            defer: r.defer,
            out_ty: ty,
            index: None,
        }),
    };
    // A default that fails its own field's cast or constraints would reject records for no visible reason.
    if let Some(d) = &f.default {
        let mut out = String::new();
        if let Err(e) = crate::map::cast_value(&plan, d, &mut out) {
            errors.push(
                format!("{at}.default"),
                format!("the default does not fit the field: {e}"),
            );
        } else if let Err(e) = crate::map::check_constraints(&plan, &out) {
            errors.push(
                format!("{at}.default"),
                format!("the default does not fit the field: {}", e.1),
            );
        }
    }
    if errors.0.len() > before {
        return None;
    }
    Some(plan)
}

fn number_format(f: &Field, at: &str, errors: &mut SpecErrors) -> NumberFormat {
    let mut nf = NumberFormat::default();
    let mut one = |key: &str, v: &str| -> Option<char> {
        let mut cs = v.chars();
        match (cs.next(), cs.next()) {
            (Some(c), None) if !c.is_ascii_digit() && c != '-' && c != '+' => Some(c),
            _ => {
                errors.push(
                    format!("{at}.{key}"),
                    format!("expected one character that is not a digit or sign, got {v:?}"),
                );
                None
            }
        }
    };
    if let Some(d) = f
        .decimal_separator
        .as_deref()
        .and_then(|v| one("decimal_separator", v))
    {
        nf.decimal_separator = d;
    }
    nf.thousands_separator = f
        .thousands_separator
        .as_deref()
        .and_then(|v| one("thousands_separator", v));
    if nf.thousands_separator == Some(nf.decimal_separator) {
        errors.push(
            format!("{at}.thousands_separator"),
            "the same character as the decimal separator",
        );
    }
    nf
}

enum TemplatePart {
    Lit(String),
    Col(String),
}

fn parse_template(t: &str) -> Result<Vec<TemplatePart>, String> {
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut chars = t.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                lit.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                lit.push('}');
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => name.push(c),
                        None => return Err(format!("unclosed `{{` in template {t:?}")),
                    }
                }
                if name.is_empty() {
                    return Err(format!("empty `{{}}` in template {t:?}"));
                }
                if !lit.is_empty() {
                    parts.push(TemplatePart::Lit(std::mem::take(&mut lit)));
                }
                parts.push(TemplatePart::Col(name));
            }
            '}' => {
                return Err(format!(
                    "lone `}}` in template {t:?} (write `}}}}` for a brace)"
                ))
            }
            c => lit.push(c),
        }
    }
    if !lit.is_empty() {
        parts.push(TemplatePart::Lit(lit));
    }
    if !parts.iter().any(|p| matches!(p, TemplatePart::Col(_))) {
        return Err(format!(
            "template {t:?} names no column; use `value` for a constant"
        ));
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::NullTokens;

    #[test]
    fn null_tokens_match_exactly_whatever_their_length() {
        let long = "n".repeat(70);
        let t = NullTokens::new(&["".into(), "NULL".into(), "\\N".into(), long.clone()]);
        for s in ["", "NULL", "\\N", long.as_str()] {
            assert!(t.contains(s), "{s:?}");
        }
        // Same lengths as tokens, other bytes; and lengths of 63 and more share one bit.
        for s in [
            "null",
            "NUL",
            "\\n",
            "x",
            &"n".repeat(69),
            &"n".repeat(63),
            &"m".repeat(70),
        ] {
            assert!(!t.contains(s), "{s:?}");
        }
        let none = NullTokens::new(&["NULL".into()]);
        assert!(!none.contains(""));
        assert!(!NullTokens::default().contains(""));
    }
}
