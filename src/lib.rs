//! cron-scheduler: keeps time for a workflow engine. It stores cron schedules, fires every
//! tick exactly once, and hands each run to an external Executor over HTTP.
//!
//! Layout: [`config`] (environment), [`db`] (pool, migrations, embedded PostgreSQL),
//! [`schedules`] (cron dialect, validated types, storage), [`api`] (REST), [`app`] (wiring
//! and the `serve` lifecycle), [`telemetry`] (logs).
#![forbid(unsafe_code)]

/// An enum stored as text (with a CHECK constraint in the schema) and sent as snake_case
/// JSON: `as_str`, `FromStr` (errors list the accepted values), `Display`, `ALL`.
macro_rules! text_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash,
            ::serde::Serialize, ::serde::Deserialize, ::utoipa::ToSchema,
        )]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(format!(
                        "{} is not one of {}",
                        $crate::api::error::quoted(s),
                        [$($text),+].join(", ")
                    )),
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub mod api;
pub mod app;
pub mod config;
pub mod db;
pub mod fleet;
pub mod healthcheck;
pub mod launcher;
pub mod mock_executor;
pub mod runs;
pub mod schedules;
pub mod telemetry;

/// This build's version, reported by health endpoints and the node registry.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
