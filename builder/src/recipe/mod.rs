//! Recipes: the TOML a user writes, validated into a [`Recipe`]. The format is documented
//! in `docs/recipe.md`.

mod error;
mod include;
mod model;
mod parse;
mod raw;
mod system;

pub use error::RecipeError;
pub use include::{SourceFile, Sources};
pub use model::stage_refs;
pub use model::{
    Base, BootMode, ConfigSpec, DiskSpec, ImageSpec, InitramfsCompression, InitramfsSpec,
    NetworkSpec, Owner, PlatformSpec, Recipe, RunSpec, SbomFormat, ServicesSpec, Stage, Step,
    StepOp, Sudo, SystemSpec, UserSpec,
};
pub use parse::{load, load_for, parse, parse_for};
