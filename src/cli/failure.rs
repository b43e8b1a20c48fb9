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
        use imgbuild_builder::SourceError as S;
        let user = match &e {
            B::Source(S::Store(_)) => false,
            B::Source(S::Pull(p)) => p.is_user_error(),
            B::Source(_) => true,
            _ => false,
        };
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

impl From<imgbuild_registry::PushError> for Failure {
    fn from(e: imgbuild_registry::PushError) -> Self {
        Self {
            code: if e.is_user_error() { 2 } else { 1 },
            message: chain(&e),
        }
    }
}

impl From<imgbuild_registry::PullError> for Failure {
    fn from(e: imgbuild_registry::PullError) -> Self {
        Self {
            code: if e.is_user_error() { 2 } else { 1 },
            message: chain(&e),
        }
    }
}

impl From<imgbuild_registry::RegistryError> for Failure {
    fn from(e: imgbuild_registry::RegistryError) -> Self {
        Self {
            code: if e.is_user_error() { 2 } else { 1 },
            message: chain(&e),
        }
    }
}

impl From<imgbuild::pipeline::PipelineError> for Failure {
    fn from(e: imgbuild::pipeline::PipelineError) -> Self {
        use imgbuild::pipeline::PipelineError as P;
        match e {
            P::Recipe(e) => e.into(),
            P::Prepare(e) => imgbuild_builder::BuildError::from(e).into(),
            P::Build(e) => e.into(),
            P::Store(e) => e.into(),
            P::BootAssets(e) => Self::internal(chain(&e)),
            P::Export(e) => e.into(),
            P::Push(e) => e.into(),
            P::Registry(e) => e.into(),
            e @ (P::UnknownImage { .. } | P::NothingToLock { .. }) => Self::user(e.to_string()),
        }
    }
}
