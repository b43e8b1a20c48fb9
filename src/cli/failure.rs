//! How errors leave the program: a message and an exit code (2 for the user's mistakes,
//! 1 for a build that failed).

use imgbuild_builder::recipe::RecipeError;
use imgbuild_builder::BuildError;
use imgbuild_formats::ExportError;
use imgbuild_store::StoreError;

/// A failed command.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) message: String,
    pub(crate) code: u8,
}

impl Failure {
    pub(crate) fn user(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: 2,
        }
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            code: 1,
        }
    }
}

pub(crate) fn chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

impl From<RecipeError> for Failure {
    fn from(e: RecipeError) -> Self {
        Self::user(e.to_string())
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        let code = if matches!(
            e,
            StoreError::LockTimeout { .. } | StoreError::SchemaTooNew { .. }
        ) {
            2
        } else {
            1
        };
        Self {
            message: chain(&e),
            code,
        }
    }
}

impl From<BuildError> for Failure {
    fn from(e: BuildError) -> Self {
        use imgbuild_builder::build::BuildError as B;
        let user =
            matches!(&e, B::Source(s) if !matches!(s, imgbuild_builder::SourceError::Store(_)));
        Self {
            message: chain(&e),
            code: if user { 2 } else { 1 },
        }
    }
}

impl From<ExportError> for Failure {
    fn from(e: ExportError) -> Self {
        let code = if matches!(
            e,
            ExportError::OutputInTheWay { .. }
                | ExportError::DiskTooSmall { .. }
                | ExportError::NoKernel
                | ExportError::NoInit
        ) {
            2
        } else {
            1
        };
        Self {
            message: chain(&e),
            code,
        }
    }
}
