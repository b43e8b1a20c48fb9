//! Recipes: the TOML a user writes, validated into a [`Recipe`]. The format is documented
//! in `docs/recipe.md`.

mod error;
mod model;
mod parse;
mod raw;

pub use error::RecipeError;
pub use model::{
    Base, BootMode, ConfigSpec, DiskSpec, ImageSpec, InitramfsCompression, InitramfsSpec, Owner,
    PlatformSpec, Recipe, RunSpec, Step, StepOp,
};
pub use parse::{load, parse};
