//! One name table per enum: [`named_enum!`](crate::named_enum) declares a unit-only enum with
//! the string name of each value, and derives from that one table everything that spells the
//! names: serde (the TOML config, JSON records), [`std::str::FromStr`], [`std::fmt::Display`],
//! and the lists that command lines and error messages show. The library crates stay free of
//! any command-line parser; the binary builds its flags from the same table.

use thiserror::Error;

/// A string that is none of an enum's names (the [`std::str::FromStr`] error of every
/// [`named_enum!`](crate::named_enum) enum). It reads like serde's message for an unknown
/// variant, which the same enums give in a config.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unknown variant `{given}`, expected {}", expected_names(expected))]
pub struct UnknownName {
    /// The string that was given.
    pub given: String,
    /// Every valid name, in declaration order.
    pub expected: &'static [&'static str],
}

/// `names` as messages list them, in serde's words: `` `a` ``, `` `a` or `b` ``, or
/// `` one of `a`, `b`, `c` ``.
pub fn expected_names(names: &[&str]) -> String {
    match names {
        [one] => format!("`{one}`"),
        [a, b] => format!("`{a}` or `{b}`"),
        _ => {
            let quoted: Vec<String> = names.iter().map(|name| format!("`{name}`")).collect();
            format!("one of {}", quoted.join(", "))
        }
    }
}

/// Declares a unit-only enum whose values each have one string name, written once next to the
/// variant (`Variant = "name"`), and generates from that table:
///
/// - `ALL` (every value, in declaration order), `NAMES` (their names, same order),
///   `name(self)`, `from_name(&str) -> Option<Self>` and `description(self)` (the variant's doc
///   comment as one line, for help texts);
/// - [`std::fmt::Display`] (the name) and [`std::str::FromStr`] (error [`UnknownName`]);
/// - `serde::Serialize` (the name as a string) and `serde::Deserialize` (from a string; an
///   unknown one is serde's "unknown variant `x`, expected one of …").
///
/// The enum and its variants keep their attributes (`#[derive(Default)]` with `#[default]`
/// works); the enum must be `Copy` and must not derive serde's traits itself. The crate using
/// it needs `serde` as a dependency.
///
/// ```
/// oxidiff_diffusion::named_enum! {
///     /// A colour.
///     #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
///     pub enum Colour {
///         /// Like the sky.
///         #[default]
///         SkyBlue = "sky-blue",
///         /// Like grass.
///         Green = "green",
///     }
/// }
///
/// assert_eq!(Colour::NAMES, ["sky-blue", "green"]);
/// assert_eq!("green".parse::<Colour>(), Ok(Colour::Green));
/// assert_eq!(Colour::SkyBlue.to_string(), "sky-blue");
/// assert_eq!(Colour::SkyBlue.description(), "Like the sky.");
/// let err = "red".parse::<Colour>().unwrap_err();
/// assert_eq!(err.to_string(), "unknown variant `red`, expected `sky-blue` or `green`");
/// ```
#[macro_export]
macro_rules! named_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $Name:ident {
            $(
                $(#[$($attr:tt)*])*
                $Variant:ident = $name:literal
            ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis enum $Name {
            $(
                $(#[$($attr)*])*
                $Variant,
            )+
        }

        impl $Name {
            /// Every value, in declaration order (the order of listings and help texts).
            pub const ALL: [Self; [$($name),+].len()] = [$(Self::$Variant),+];

            /// The name of every value, in the order of [`Self::ALL`]: the one spelling of the
            /// config, the command line and messages.
            pub const NAMES: [&'static str; [$($name),+].len()] = [$($name),+];

            /// The name of this value, as in the config and on the command line.
            pub fn name(self) -> &'static str {
                match self {
                    $(Self::$Variant => $name,)+
                }
            }

            /// The value called `name`, if there is one.
            pub fn from_name(name: &str) -> Option<Self> {
                match name {
                    $($name => Some(Self::$Variant),)+
                    _ => None,
                }
            }

            /// What this value does: its doc comment as one line, for help texts.
            pub fn description(self) -> &'static str {
                match self {
                    $(Self::$Variant => concat!($($crate::__doc_text!($($attr)*)),*).trim_start(),)+
                }
            }
        }

        impl ::std::fmt::Display for $Name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl ::std::str::FromStr for $Name {
            type Err = $crate::UnknownName;

            fn from_str(name: &str) -> ::std::result::Result<Self, Self::Err> {
                Self::from_name(name).ok_or_else(|| $crate::UnknownName {
                    given: name.to_owned(),
                    expected: &Self::NAMES,
                })
            }
        }

        impl ::serde::Serialize for $Name {
            fn serialize<S: ::serde::Serializer>(
                &self,
                serializer: S,
            ) -> ::std::result::Result<S::Ok, S::Error> {
                serializer.serialize_str(self.name())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $Name {
            fn deserialize<D: ::serde::Deserializer<'de>>(
                deserializer: D,
            ) -> ::std::result::Result<Self, D::Error> {
                struct NameVisitor;

                impl ::serde::de::Visitor<'_> for NameVisitor {
                    type Value = $Name;

                    fn expecting(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                        f.write_str(&$crate::expected_names(&$Name::NAMES))
                    }

                    fn visit_str<E: ::serde::de::Error>(
                        self,
                        name: &str,
                    ) -> ::std::result::Result<$Name, E> {
                        $Name::from_name(name).ok_or_else(|| E::unknown_variant(name, &$Name::NAMES))
                    }
                }

                deserializer.deserialize_str(NameVisitor)
            }
        }
    };
}

/// The text of a `doc = "…"` attribute and nothing for any other: how [`named_enum!`] reads a
/// variant's doc comment out of its attributes.
#[doc(hidden)]
#[macro_export]
macro_rules! __doc_text {
    (doc = $doc:literal) => {
        $doc
    };
    ($($other:tt)*) => {
        ""
    };
}
