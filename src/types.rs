//! The closed set of field types, parsed from the mapping's `type = "decimal(18,2)"` strings.

use std::fmt;

/// A target field type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    Text,
    Integer,
    Decimal { precision: u8, scale: u8 },
    Float,
    Boolean,
    Date,
    Time,
    Timestamp,
    TimestampTz,
    Uuid,
    Json,
}

/// Largest decimal precision accepted: what PostgreSQL, MySQL and Parquet can all hold exactly.
pub const MAX_DECIMAL_PRECISION: u8 = 38;

impl FieldType {
    /// Parses a type name as written in a mapping file.
    pub fn parse(s: &str) -> Result<FieldType, String> {
        let t = s.trim().to_ascii_lowercase();
        let simple = match t.as_str() {
            "text" | "string" => Some(FieldType::Text),
            "integer" | "int" | "bigint" => Some(FieldType::Integer),
            "float" | "double" => Some(FieldType::Float),
            "boolean" | "bool" => Some(FieldType::Boolean),
            "date" => Some(FieldType::Date),
            "time" => Some(FieldType::Time),
            "timestamp" | "datetime" => Some(FieldType::Timestamp),
            "timestamptz" => Some(FieldType::TimestampTz),
            "uuid" => Some(FieldType::Uuid),
            "json" => Some(FieldType::Json),
            _ => None,
        };
        if let Some(ft) = simple {
            return Ok(ft);
        }
        if let Some(args) = t
            .strip_prefix("decimal")
            .or_else(|| t.strip_prefix("numeric"))
        {
            let args = args.trim();
            let inner = args
                .strip_prefix('(')
                .and_then(|a| a.strip_suffix(')'))
                .ok_or_else(|| {
                    format!(
                        "decimal needs a precision and a scale, as in \"decimal(18,2)\"; got {s:?}"
                    )
                })?;
            let (p, sc) = inner.split_once(',').ok_or_else(|| {
                format!("decimal needs a precision and a scale, as in \"decimal(18,2)\"; got {s:?}")
            })?;
            let p: u8 = p
                .trim()
                .parse()
                .map_err(|_| format!("bad decimal precision in {s:?}"))?;
            let sc: u8 = sc
                .trim()
                .parse()
                .map_err(|_| format!("bad decimal scale in {s:?}"))?;
            if p == 0 || p > MAX_DECIMAL_PRECISION {
                return Err(format!(
                    "decimal precision must be 1 to {MAX_DECIMAL_PRECISION}; got {p}"
                ));
            }
            if sc > p {
                return Err(format!(
                    "decimal scale {sc} is larger than its precision {p}"
                ));
            }
            return Ok(FieldType::Decimal {
                precision: p,
                scale: sc,
            });
        }
        let names = [
            "text",
            "integer",
            "decimal",
            "float",
            "boolean",
            "date",
            "time",
            "timestamp",
            "timestamptz",
            "uuid",
            "json",
        ];
        Err(format!(
            "unknown type {s:?}; expected one of {}{}",
            names.join(", "),
            crate::error::hint(s, names)
        ))
    }

    /// Whether the type is read with `formats`.
    pub fn is_temporal(self) -> bool {
        matches!(
            self,
            FieldType::Date | FieldType::Time | FieldType::Timestamp | FieldType::TimestampTz
        )
    }
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldType::Text => write!(f, "text"),
            FieldType::Integer => write!(f, "integer"),
            FieldType::Decimal { precision, scale } => write!(f, "decimal({precision},{scale})"),
            FieldType::Float => write!(f, "float"),
            FieldType::Boolean => write!(f, "boolean"),
            FieldType::Date => write!(f, "date"),
            FieldType::Time => write!(f, "time"),
            FieldType::Timestamp => write!(f, "timestamp"),
            FieldType::TimestampTz => write!(f, "timestamptz"),
            FieldType::Uuid => write!(f, "uuid"),
            FieldType::Json => write!(f, "json"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_type_and_refuses_bad_ones() {
        assert_eq!(
            FieldType::parse("decimal(18, 2)"),
            Ok(FieldType::Decimal {
                precision: 18,
                scale: 2
            })
        );
        assert_eq!(FieldType::parse("TimestampTZ"), Ok(FieldType::TimestampTz));
        assert!(FieldType::parse("decimal").is_err());
        assert!(FieldType::parse("decimal(2,3)").is_err());
        assert!(FieldType::parse("decimal(39,0)").is_err());
        let e = FieldType::parse("intger").unwrap_err();
        assert!(e.contains("did you mean \"integer\""), "{e}");
    }
}
