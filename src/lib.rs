//! random-refresher: health-tests a node's hardware RNG and refreshes the
//! kernel's entropy pool with tested bytes only.
//!
//! Data flows one way: [`source`] → [`health`] → [`sink`], wired for one
//! cycle at a time by [`refresher`] and observed through [`telemetry`].
//! [`TestedRng`] offers the same tested stream to other Rust programs: it
//! is the one item meant for them. The modules public besides it are so for
//! this package's own binary, benchmarks, property tests and fuzz targets,
//! and make no promise of stability; the rest (`check`, `inventory`,
//! `privileges`) are private.

/// An enum whose variants each have one stable name, and the list of all
/// variants: the single definition that metric labels, JSON keys and
/// reports are all derived from, so that a new variant reaches every output.
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $($(#[$vmeta:meta])* $variant:ident => $label:literal),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        $vis enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every variant, in report order.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The stable name: metric label value and JSON key.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $label),+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

pub mod app;
mod atomic_file;
mod check;
pub mod cli;
pub mod health;
mod inventory;
pub mod kernel;
mod privileges;
pub mod refresher;
pub mod sink;
pub mod source;
pub mod telemetry;
#[cfg(test)]
mod test_support;
mod tested_rng;
#[cfg(any(test, target_arch = "aarch64"))]
mod xorshift;

pub use tested_rng::{TestedRng, TestedRngError};
