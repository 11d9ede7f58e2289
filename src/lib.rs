//! random-refresher: health-tests a node's hardware RNG and refreshes the
//! kernel's entropy pool with tested bytes only.
//!
//! Data flows one way: [`source`] → [`health`] → [`sink`], driven by the
//! loop in [`refresher`] and observed through [`telemetry`]. The library
//! exists so that benchmarks and fuzz targets reach the same code the
//! binary runs.

pub mod app;
pub mod check;
pub mod cli;
pub mod health;
pub mod inventory;
pub mod kernel;
pub mod privileges;
pub mod refresher;
pub mod sink;
pub mod source;
pub mod telemetry;
