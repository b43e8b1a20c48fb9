//! The canonical JSON encoding keys are hashed from.

use imgbuild_store::Digest;
use serde_json::Value;

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
}
