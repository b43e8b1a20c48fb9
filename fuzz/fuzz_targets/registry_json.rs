//! What a registry sends back: manifest, index, image config and build-cache JSON (as
//! `pull`, `push` and `--cache-from` read them), references and auth challenges.
#![no_main]

use imgbuild_registry::CacheRecord;
use imgbuild_store::oci::{ImageConfig, Index, Manifest};
use libfuzzer_sys::fuzz_target;

/// Parses `bytes` as `T`; what parses serialises to JSON that parses back to the same value.
fn round_trip<T>(bytes: &[u8])
where
    T: serde::de::DeserializeOwned + serde::Serialize + PartialEq + std::fmt::Debug,
{
    if let Ok(v) = serde_json::from_slice::<T>(bytes) {
        let out = serde_json::to_vec(&v).expect("serialises");
        let again: T = serde_json::from_slice(&out).expect("our own JSON parses");
        assert_eq!(v, again);
    }
}

fuzz_target!(|data: &[u8]| {
    round_trip::<Manifest>(data);
    round_trip::<Index>(data);
    round_trip::<ImageConfig>(data);
    round_trip::<Vec<CacheRecord>>(data);
    // `pull::resolve`'s path: a generic document first, then the index from it.
    if let Ok(doc) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = doc.get("mediaType").and_then(|m| m.as_str());
        let _ = serde_json::from_value::<Index>(doc);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(r) = imgbuild_registry::Reference::parse(text) {
            let _ = (r.api_host(), r.manifest_ref());
            let again = imgbuild_registry::Reference::parse(&r.to_string())
                .expect("a printed reference parses");
            assert_eq!(again, r);
        }
        let _ = imgbuild_registry::fuzzing::parse_challenge(text);
    }
});
