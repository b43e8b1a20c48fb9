//! The canonical JSON encoding keys are hashed from.

use imgbuild_store::{Digest, Sha256Writer};
use serde_json::{Map, Value};
use std::io::Write;

/// sha256 of the canonical encoding of `value`.
pub fn key_of(value: &Value) -> Digest {
    Digest::of(encode(value).as_bytes())
}

/// The canonical encoding of `value`.
pub(crate) fn encode(value: &Value) -> String {
    let mut out = String::new();
    canonical(value, &mut out);
    out
}

/// sha256 of the canonical encoding of `fields` with one more field, `array`, whose
/// value is the array of `items`. The items are encoded and hashed one at a time, never
/// built into one value: a `copy` step has an input per copied file, and a tree of
/// 100,000 files would otherwise take two copies of its inputs as JSON values (about
/// 170 MB) just to be hashed. The digest is the one [`key_of`] gives for the whole value.
pub fn key_of_with_array(
    fields: &Map<String, Value>,
    array: &str,
    items: impl IntoIterator<Item = Value>,
) -> Digest {
    debug_assert!(!fields.contains_key(array), "{array} given twice");
    let mut hasher = Sha256Writer::new(std::io::sink());
    let mut out = String::new();
    let mut flush = |out: &mut String| {
        // Writing to a sink through a hasher cannot fail.
        let _ = hasher.write_all(out.as_bytes());
        out.clear();
    };
    let mut keys: Vec<&str> = fields.keys().map(String::as_str).chain([array]).collect();
    keys.sort_unstable();
    let mut items = Some(items);
    out.push('{');
    for (i, key) in keys.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&Value::String(key.to_owned()).to_string());
        out.push(':');
        match (key == array, items.take()) {
            (true, Some(items)) => {
                out.push('[');
                for (j, item) in items.into_iter().enumerate() {
                    if j > 0 {
                        out.push(',');
                    }
                    canonical(&item, &mut out);
                    if out.len() >= 1 << 16 {
                        flush(&mut out);
                    }
                }
                out.push(']');
            }
            (_, rest) => {
                items = rest;
                canonical(&fields[key], &mut out);
            }
        }
    }
    out.push('}');
    flush(&mut out);
    hasher.finish().0
}

/// JSON with object keys sorted and no whitespace, whatever map type serde_json was built with.
fn canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical(&map[k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                canonical(v, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_encoding_ignores_key_order() {
        let a = json!({"b": 1, "a": [1, {"y": 2, "x": 1}]});
        let b = json!({"a": [1, {"x": 1, "y": 2}], "b": 1});
        assert_eq!(key_of(&a), key_of(&b));
        assert_ne!(key_of(&a), key_of(&json!({"a": [], "b": 1})));
    }

    #[test]
    fn a_key_with_its_array_streamed_is_the_key_of_the_whole_value() {
        let items: Vec<Value> = (0..5000)
            .map(|i| json!({"path": format!("d/f\"{i}\n"), "size": i, "mode": 420}))
            .collect();
        let fields = json!({"v": 3, "step": {"copy": {"to": "/x"}}, "parent": "sha256:00"});
        let Value::Object(map) = &fields else {
            unreachable!()
        };
        let mut whole = fields.clone();
        whole["inputs"] = Value::Array(items.clone());
        assert_eq!(
            key_of_with_array(map, "inputs", items.clone()),
            key_of(&whole)
        );
        let mut empty = fields.clone();
        empty["inputs"] = json!([]);
        assert_eq!(key_of_with_array(map, "inputs", []), key_of(&empty));
        assert_eq!(
            key_of_with_array(map, "a", []),
            key_of(&{
                let mut v = fields.clone();
                v["a"] = json!([]);
                v
            })
        );
    }
}
