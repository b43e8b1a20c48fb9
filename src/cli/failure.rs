//! How errors leave the program: a message, an exit code (2 when the user has to fix
//! something, 1 otherwise), and for `--json` one JSON object on stdout.
//!
//! The exit code comes from each error's own `is_user_error()`; the `kind` (a stable
//! word for scripts, listed in [`Kind`]) from what failed.

use imgbuild_builder::boot_assets::BootAssetsError;
use imgbuild_builder::debian::http::HttpError;
use imgbuild_builder::recipe::RecipeError;
use imgbuild_builder::{BuildError, SourceError};
use imgbuild_formats::ExportError;
use imgbuild_registry::RegistryError;
use imgbuild_store::StoreError;
use std::error::Error;
use std::path::PathBuf;

/// What failed, as the `kind` of a `--json` error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A mistake in the recipe, located in it (`file`, `line`, `column`).
    Recipe,
    /// A bad argument, flag or input file on the command line.
    Usage,
    /// The Debian lock file is missing, out of date or malformed.
    Lock,
    /// Debian packages could not be resolved or verified (unknown package, bad signature).
    Debian,
    /// A mirror or registry could not be reached, or a download broke off.
    Network,
    /// A registry refused (credentials, a missing image, corrupt data).
    Registry,
    /// A base image or a copied file could not be used.
    Source,
    /// The store failed, is locked or is too new.
    Store,
    /// A step failed (its command, the sandbox).
    Build,
    /// Writing an output failed.
    Export,
    /// Anything else, including imgbuild's own bugs.
    Internal,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Recipe => "recipe",
            Self::Usage => "usage",
            Self::Lock => "lock",
            Self::Debian => "debian",
            Self::Network => "network",
            Self::Registry => "registry",
            Self::Source => "source",
            Self::Store => "store",
            Self::Build => "build",
            Self::Export => "export",
            Self::Internal => "internal",
        }
    }
}

/// A failed command.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) message: String,
    pub(crate) code: u8,
    kind: Kind,
    /// The file, line and column (both 0 when only the file is known), and the message
    /// without the quoted line, for `--json`.
    location: Option<(PathBuf, usize, usize, String)>,
    /// The command already printed its outcome (its `--json` object included), so no
    /// error object follows it.
    pub(crate) reported: bool,
}

impl Failure {
    fn new(message: String, user: bool, kind: Kind) -> Self {
        Self {
            message,
            code: if user { 2 } else { 1 },
            kind,
            location: None,
            reported: false,
        }
    }

    /// An error with its source chain, classified by the error itself (`user`) and by
    /// what failed (`kind`, replaced by [`Kind::Network`] when the chain holds a failed
    /// connection).
    fn classified(err: &(dyn Error + 'static), user: bool, kind: Kind) -> Self {
        let kind = if network_in_chain(err) {
            Kind::Network
        } else {
            kind
        };
        Self::new(chain(err), user, kind)
    }

    pub(crate) fn user(message: impl Into<String>) -> Self {
        Self::new(message.into(), true, Kind::Usage)
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(message.into(), false, Kind::Internal)
    }

    /// Exit with `code`, the status of a command run in a guest (`run --exec`).
    pub(crate) fn guest_command(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            ..Self::new(message.into(), false, Kind::Build)
        }
    }

    /// Exit 1 after a command printed its outcome, which says what went wrong
    /// (`build --check` finding layers that differ).
    pub(crate) fn reported(message: impl Into<String>) -> Self {
        Self {
            reported: true,
            ..Self::new(message.into(), false, Kind::Build)
        }
    }

    /// The `--json` form: `{"error": {"message", "kind", "file", "line", "column"}}`.
    pub(crate) fn to_json(&self) -> serde_json::Value {
        let (file, line, column, message) = match &self.location {
            Some((file, line, column, message)) => (
                Some(file.display().to_string()),
                (*line > 0).then_some(*line),
                (*line > 0).then_some(*column),
                message,
            ),
            None => (None, None, None, &self.message),
        };
        serde_json::json!({"error": {
            "message": message,
            "kind": self.kind.as_str(),
            "file": file,
            "line": line,
            "column": column,
        }})
    }
}

pub(crate) fn chain(err: &dyn Error) -> String {
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

/// Whether `err` or one of its sources is a failed connection to a mirror or registry
/// (not a refusal such as a 404 or a 401, which are answers).
fn network_in_chain(err: &(dyn Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(h) = e.downcast_ref::<HttpError>() {
            return !h.is_user_error();
        }
        if let Some(r) = e.downcast_ref::<RegistryError>() {
            return r.is_transient();
        }
        next = e.source();
    }
    false
}

impl From<RecipeError> for Failure {
    fn from(e: RecipeError) -> Self {
        let mut failure = Self::new(e.to_string(), e.is_user_error(), Kind::Recipe);
        let message = match &e.help {
            Some(help) => format!("{}; {help}", e.message),
            None => e.message.clone(),
        };
        failure.location = Some((e.file.clone(), e.line, e.column, message));
        failure
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Self::classified(&e, e.is_user_error(), Kind::Store)
    }
}

fn source_kind(e: &SourceError) -> Kind {
    use SourceError as S;
    match e {
        S::Lock(_) | S::Locked { .. } => Kind::Lock,
        S::Release(_) | S::Index(_) | S::Resolve(_) | S::Fetch(_) | S::Deb(_) => Kind::Debian,
        S::Pull(_) => Kind::Registry,
        S::Store(_) => Kind::Store,
        S::Internal(_) => Kind::Internal,
        S::Io(_)
        | S::Walk { .. }
        | S::Unsupported { .. }
        | S::BadImage { .. }
        | S::Layer { .. }
        | S::NotLocal { .. } => Kind::Source,
    }
}

impl From<SourceError> for Failure {
    fn from(e: SourceError) -> Self {
        Self::classified(&e, e.is_user_error(), source_kind(&e))
    }
}

impl From<BuildError> for Failure {
    fn from(e: BuildError) -> Self {
        let kind = match &e {
            BuildError::Source(s) => source_kind(s),
            BuildError::Step(_) => Kind::Build,
            BuildError::Store(_) | BuildError::Layer { .. } | BuildError::LeftTheCache { .. } => {
                Kind::Store
            }
            BuildError::MissingSecret { .. } => Kind::Usage,
        };
        Self::classified(&e, e.is_user_error(), kind)
    }
}

impl From<BootAssetsError> for Failure {
    fn from(e: BootAssetsError) -> Self {
        let kind = match &e {
            BootAssetsError::Store(_) => Kind::Store,
            _ => Kind::Debian,
        };
        Self::classified(&e, e.is_user_error(), kind)
    }
}

impl From<ExportError> for Failure {
    fn from(e: ExportError) -> Self {
        let kind = match &e {
            ExportError::Store(_) => Kind::Store,
            _ => Kind::Export,
        };
        Self::classified(&e, e.is_user_error(), kind)
    }
}

impl From<imgbuild_registry::PushError> for Failure {
    fn from(e: imgbuild_registry::PushError) -> Self {
        Self::classified(&e, e.is_user_error(), Kind::Registry)
    }
}

impl From<imgbuild_registry::PullError> for Failure {
    fn from(e: imgbuild_registry::PullError) -> Self {
        Self::classified(&e, e.is_user_error(), Kind::Registry)
    }
}

impl From<RegistryError> for Failure {
    fn from(e: RegistryError) -> Self {
        Self::classified(&e, e.is_user_error(), Kind::Registry)
    }
}

impl From<imgbuild::pipeline::PipelineError> for Failure {
    fn from(e: imgbuild::pipeline::PipelineError) -> Self {
        use imgbuild::pipeline::PipelineError as P;
        match e {
            P::Recipe(e) => e.into(),
            P::Prepare(e) => e.into(),
            P::Build(e) => e.into(),
            P::Store(e) => e.into(),
            P::BootAssets(e) => e.into(),
            P::Export(e) => e.into(),
            P::Push(e) => e.into(),
            P::Registry(e) => e.into(),
            e @ P::UnknownImage { .. } => Self::user(e.to_string()),
            e @ P::Check(_) => Self::classified(&e, false, Kind::Store),
            P::Emulation(e) => Self::new(format!("{e}\n  = help: {}", e.help()), true, Kind::Build),
            e @ P::Document { .. } => Self::classified(&e, false, Kind::Export),
            P::Platforms { message, help } => {
                Self::new(format!("{message}\n  = help: {help}"), true, Kind::Build)
            }
        }
    }
}
