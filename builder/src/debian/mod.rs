//! imgbuild's own Debian repository client.
//!
//! Turns a recipe's `[from] debian = { suite, variant, ... }` plus the packages of its
//! steps into an exact, locked set of `.deb` files:
//!
//! 1. [`release`]: fetch `dists/<suite>/InRelease`, verify its OpenPGP signature
//!    against a keyring, parse its `SHA256` list;
//! 2. [`index`]: fetch each component's `Packages` index, checked against the Release;
//! 3. [`resolve`]: close the requested set under `Pre-Depends`/`Depends`;
//! 4. [`lock`]: record the result as `recipe.lock`;
//! 5. [`fetch`]: download the `.deb`s by hash into a [`index::BlobCache`];
//! 6. [`deb`]: read a `.deb`'s control fields and data tarball.
//!
//! [`control`] (deb822) and [`version`] (Policy §5.6.12 versions, §7 relations)
//! are the shared parsers.

pub mod control;
pub mod deb;
pub mod fetch;
pub mod http;
pub mod index;
pub mod lock;
pub mod release;
pub mod resolve;
pub mod version;
