//! cron-scheduler: keeps time for a workflow engine. It stores cron schedules, fires every
//! tick exactly once, and hands each run to an external Executor over HTTP.
//!
//! Layout: [`config`] (environment), [`db`] (pool, migrations, embedded PostgreSQL),
//! [`schedules`] (cron dialect, validated types, storage), [`api`] (REST), [`app`] (wiring
//! and the `serve` lifecycle), [`telemetry`] (metrics, spans, logs), [`otlp`] (where
//! they are exported) and [`ctl`] (the command-line client of the REST API).
#![forbid(unsafe_code)]

/// An enum stored as text (with a CHECK constraint in the schema) and sent as snake_case
/// JSON: `as_str`, `FromStr` (errors list the accepted values), `Display`, `ALL`, and the
/// sqlx mapping to a text column (and `text[]` for arrays), so rows and binds carry the
/// enum, never a string that could be misspelt.
macro_rules! text_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash,
            ::serde::Serialize, ::serde::Deserialize, ::utoipa::ToSchema,
        )]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vm])* $variant),+ }

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
                        $crate::text::quoted(s),
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

        // A text column decodes into (and binds from) the enum; a value outside it is a
        // decode error naming the value, never a silent default.
        impl ::sqlx::Type<::sqlx::Postgres> for $name {
            fn type_info() -> ::sqlx::postgres::PgTypeInfo {
                <&str as ::sqlx::Type<::sqlx::Postgres>>::type_info()
            }
            fn compatible(ty: &::sqlx::postgres::PgTypeInfo) -> bool {
                <&str as ::sqlx::Type<::sqlx::Postgres>>::compatible(ty)
            }
        }

        impl ::sqlx::postgres::PgHasArrayType for $name {
            fn array_type_info() -> ::sqlx::postgres::PgTypeInfo {
                <&str as ::sqlx::postgres::PgHasArrayType>::array_type_info()
            }
        }

        impl<'r> ::sqlx::Decode<'r, ::sqlx::Postgres> for $name {
            fn decode(
                value: ::sqlx::postgres::PgValueRef<'r>,
            ) -> Result<Self, ::sqlx::error::BoxDynError> {
                Ok(<&str as ::sqlx::Decode<::sqlx::Postgres>>::decode(value)?.parse()?)
            }
        }

        impl ::sqlx::Encode<'_, ::sqlx::Postgres> for $name {
            fn encode_by_ref(
                &self,
                buf: &mut ::sqlx::postgres::PgArgumentBuffer,
            ) -> Result<::sqlx::encode::IsNull, ::sqlx::error::BoxDynError> {
                <&str as ::sqlx::Encode<::sqlx::Postgres>>::encode(self.as_str(), buf)
            }
        }
    };
}

pub mod api;
pub mod app;
pub mod config;
pub mod credentials;
pub mod ctl;
pub mod db;
pub mod field;
pub mod fleet;
pub mod healthcheck;
pub mod kinds;
pub mod launcher;
pub mod mock_executor;
pub mod net;
pub mod otlp;
pub mod retry;
pub mod runs;
pub mod schedules;
pub mod telemetry;
pub mod text;

/// This build's version, reported by health endpoints and the node registry.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
