//! The recipe parser: any text either parses into a recipe or gives a located error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Beside the shipped recipes, so `copy = "hello/app"` resolves as it does for them.
    let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../recipes/fuzz.toml"));
    if let Err(e) = imgbuild_builder::recipe::parse(path, text) {
        // Rendering the error (with its source excerpt) must not panic either.
        let _ = e.to_string();
    }
});
