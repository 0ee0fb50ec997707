//! Settings that take one of a fixed list of names (providers, backends, modes): parsed from
//! a string, refused with the list of names allowed, written back as the same name.

/// Declares such an enum: `choice! { /// doc
/// pub enum Mode { /// doc
/// Fast = "fast", Slow = "slow", } }`.
#[macro_export]
macro_rules! choice {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every name allowed, in settings.toml's order.
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            /// The name as written in settings.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( Self::$variant => $text, )+
                }
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;

            fn from_str(s: &str) -> Result<Self, String> {
                match s.trim() {
                    $( $text => Ok(Self::$variant), )+
                    other => Err(format!("{other:?} is not one of {:?}", Self::NAMES)),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

#[cfg(test)]
mod tests {
    crate::choice! {
        /// A test choice.
        pub enum Speed {
            Fast = "fast",
            Slow = "slow",
        }
    }

    #[test]
    fn names_parse_and_a_wrong_one_lists_the_choices() {
        assert_eq!("slow".parse::<Speed>(), Ok(Speed::Slow));
        assert_eq!(Speed::Fast.to_string(), "fast");
        let err = "fsat".parse::<Speed>().unwrap_err();
        assert_eq!(err, r#""fsat" is not one of ["fast", "slow"]"#);
        let json: Speed = serde_json::from_str("\"fast\"").unwrap();
        assert_eq!(json, Speed::Fast);
        assert_eq!(serde_json::to_string(&Speed::Slow).unwrap(), "\"slow\"");
        assert!(serde_json::from_str::<Speed>("\"fsat\"").is_err());
    }
}
