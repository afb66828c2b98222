//! Text for people: aligned columns and `key: value` blocks, from the API's JSON.

use serde_json::Value;

/// A field of a JSON object as table text: strings as they are, `null` or missing as `-`,
/// lists joined by commas.
pub fn cell(object: &Value, key: &str) -> String {
    text(&object[key])
}

pub fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.is_empty() => "-".into(),
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

/// Columns padded to their widest cell, two spaces apart; the last one is not padded.
pub fn render(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, c) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut out = String::new();
        for (i, c) in cells.into_iter().enumerate() {
            out.push_str(c);
            if i < last {
                let pad = widths[i] - c.chars().count() + 2;
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.trim_end().to_owned()
    };
    let mut out = line(headers.to_vec());
    for row in rows {
        out.push('\n');
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// `key: value` lines, the values aligned.
pub fn fields(pairs: &[(&str, String)]) -> String {
    let width = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    pairs
        .iter()
        .map(|(k, v)| format!("{k:width$}  {v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up() {
        let out = render(
            &["ID", "STATUS"],
            &[
                vec!["a".into(), "active".into()],
                vec!["long-id".into(), "paused".into()],
            ],
        );
        assert_eq!(out, "ID       STATUS\na        active\nlong-id  paused");
    }

    #[test]
    fn cells_read_json() {
        let v = serde_json::json!({"s": "x", "n": 3, "b": true, "z": null, "l": ["a", "b"]});
        assert_eq!(cell(&v, "s"), "x");
        assert_eq!(cell(&v, "n"), "3");
        assert_eq!(cell(&v, "b"), "true");
        assert_eq!(cell(&v, "z"), "-");
        assert_eq!(cell(&v, "missing"), "-");
        assert_eq!(cell(&v, "l"), "a, b");
    }
}
