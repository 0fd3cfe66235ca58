//! Values with units, as written in `wireline.toml`: durations, rates and sizes.
//!
//! Each type parses from a string with the unit in it (`"250ms"`, `"100/s"`, `"1MiB"`),
//! prints back to the same form, and explains a bad value with an example of a good one.
//! Bare numbers are refused on purpose: `timeout = 30` could mean seconds or milliseconds.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A parse error for a value with a unit; the message says what a good value looks like.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct UnitError {
    message: String,
}

impl UnitError {
    fn new(message: String) -> Self {
        Self { message }
    }
}

/// A length of time written with its unit: `"250ms"`, `"30s"`, `"15m"`, `"7d"`, `"1h 30m"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(std::time::Duration);

impl Duration {
    /// A duration of `secs` seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Self(std::time::Duration::from_secs(secs))
    }

    /// A duration of `millis` milliseconds.
    pub const fn from_millis(millis: u64) -> Self {
        Self(std::time::Duration::from_millis(millis))
    }

    /// The standard library duration.
    pub const fn get(self) -> std::time::Duration {
        self.0
    }
}

impl From<std::time::Duration> for Duration {
    fn from(value: std::time::Duration) -> Self {
        Self(value)
    }
}

impl FromStr for Duration {
    type Err = UnitError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        if !trimmed.is_empty() && trimmed.chars().all(|c| c.is_ascii_digit()) {
            return Err(UnitError::new(format!(
                "duration \"{text}\" has no unit; write it with one, e.g. \"{trimmed}s\" or \"{trimmed}ms\""
            )));
        }
        humantime::parse_duration(trimmed).map(Self).map_err(|error| {
            UnitError::new(format!(
                "invalid duration \"{text}\" ({error}); write a number and a unit, e.g. \"250ms\", \"30s\", \"15m\", \"7d\""
            ))
        })
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_zero() {
            return f.write_str("0s");
        }
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

/// How often something may happen: `"100/s"`, `"1/s"`, `"600/min"`, `"100000/day"`, `"10/15m"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    /// How many events are allowed per `per`.
    pub count: u64,
    /// The window the count applies to.
    pub per: Duration,
}

impl Rate {
    /// Events per second, as a float (for budgets and cost models).
    pub fn per_second(&self) -> f64 {
        self.count as f64 / self.per.get().as_secs_f64()
    }
}

impl FromStr for Rate {
    type Err = UnitError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| {
            UnitError::new(format!(
                "invalid rate \"{text}\" ({why}); write a count, a slash and a unit, e.g. \"100/s\", \"600/min\", \"100000/day\""
            ))
        };
        let (count, unit) = text.trim().split_once('/').ok_or_else(|| bad("no '/'"))?;
        let count: u64 = count
            .trim()
            .parse()
            .map_err(|_| bad("the count is not a whole number"))?;
        if count == 0 {
            return Err(bad("the count must be at least 1"));
        }
        let unit = unit.trim();
        let per = match unit {
            "ms" => Duration::from_millis(1),
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            "d" | "day" => Duration::from_secs(86_400),
            "month" => Duration::from_secs(30 * 86_400),
            other => other
                .parse::<Duration>()
                .map_err(|_| bad("unknown unit after '/'"))?,
        };
        if per.get().is_zero() {
            return Err(bad("the window must be longer than zero"));
        }
        Ok(Self { count, per })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.get().as_secs() {
            _ if self.per.get() == std::time::Duration::from_millis(1) => "ms".to_owned(),
            1 if self.per.get().subsec_nanos() == 0 => "s".to_owned(),
            60 => "min".to_owned(),
            3600 => "hour".to_owned(),
            86_400 => "day".to_owned(),
            2_592_000 => "month".to_owned(),
            _ => self.per.to_string(),
        };
        write!(f, "{}/{unit}", self.count)
    }
}

/// A number of bytes written with its unit: `"512KiB"`, `"1MiB"`, `"10MB"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Size(u64);

impl Size {
    /// A size of `bytes` bytes.
    pub const fn from_bytes(bytes: u64) -> Self {
        Self(bytes)
    }

    /// The size in bytes.
    pub const fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for Size {
    type Err = UnitError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        let bad = || {
            UnitError::new(format!(
                "invalid size \"{text}\"; write a number and a unit, e.g. \"512KiB\", \"1MiB\", \"10MB\""
            ))
        };
        // A unit is required for the same reason as for durations: "1024" is ambiguous to a
        // reader even if it is not to the parser.
        if trimmed.is_empty() || !trimmed.ends_with(|c: char| c.is_ascii_alphabetic()) {
            return Err(bad());
        }
        trimmed
            .parse::<bytesize::ByteSize>()
            .map(|size| Self(size.as_u64()))
            .map_err(|_| bad())
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 4] = [
            (1 << 40, "TiB"),
            (1 << 30, "GiB"),
            (1 << 20, "MiB"),
            (1 << 10, "KiB"),
        ];
        for (factor, unit) in UNITS {
            if self.0 >= factor && self.0.is_multiple_of(factor) {
                return write!(f, "{}{unit}", self.0 / factor);
            }
        }
        write!(f, "{}B", self.0)
    }
}

/// Serde and JSON Schema for the unit types: a string in, the same string out.
macro_rules! string_unit {
    ($ty:ty, $name:literal, $pattern:literal, $description:literal, [$($example:literal),*]) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = Cow::<str>::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }

        impl JsonSchema for $ty {
            fn schema_name() -> Cow<'static, str> {
                $name.into()
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({
                    "type": "string",
                    "pattern": $pattern,
                    "description": $description,
                    "examples": [$($example),*],
                })
            }
        }
    };
}

string_unit!(
    Duration,
    "Duration",
    "^\\s*([0-9]+\\s*[a-zA-Z]+\\s*)+$",
    "A length of time with its unit: ms, s, m, h, d (e.g. \"250ms\", \"30s\", \"15m\", \"7d\").",
    ["250ms", "30s", "15m", "7d"]
);
string_unit!(
    Rate,
    "Rate",
    "^\\s*[0-9]+\\s*/\\s*[0-9a-zA-Z ]+$",
    "A count per window: \"100/s\", \"600/min\", \"100000/day\", or a window as a duration (\"10/15m\").",
    ["100/s", "1/s", "100000/day"]
);
string_unit!(
    Size,
    "Size",
    "^\\s*[0-9.]+\\s*[a-zA-Z]+$",
    "A number of bytes with its unit: B, KB, KiB, MB, MiB, GB, GiB (e.g. \"1MiB\").",
    ["512KiB", "1MiB", "10MB"]
);

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check<T>(input: &str, expected: Result<&str, &str>)
    where
        T: FromStr<Err = UnitError> + fmt::Display,
    {
        match (input.parse::<T>(), expected) {
            (Ok(value), Ok(display)) => assert_eq!(value.to_string(), display, "{input}"),
            (Err(error), Err(fragment)) => {
                assert!(error.to_string().contains(fragment), "{input}: {error}")
            }
            (Ok(value), Err(_)) => panic!("{input} parsed as {value}, expected an error"),
            (Err(error), Ok(_)) => panic!("{input} failed: {error}"),
        }
    }

    #[test]
    fn durations() {
        check::<Duration>("250ms", Ok("250ms"));
        check::<Duration>("30s", Ok("30s"));
        check::<Duration>("15m", Ok("15m"));
        check::<Duration>("7d", Ok("7days"));
        check::<Duration>("1h 30m", Ok("1h 30m"));
        check::<Duration>("0s", Ok("0s"));
        check::<Duration>("30", Err("has no unit; write it with one, e.g. \"30s\""));
        check::<Duration>("thirty seconds", Err("e.g. \"250ms\""));
        check::<Duration>("5 fortnights", Err("invalid duration"));
        check::<Duration>("", Err("invalid duration"));
        assert_eq!(
            "7d".parse::<Duration>().map(Duration::get),
            Ok(std::time::Duration::from_secs(7 * 86_400))
        );
    }

    #[test]
    fn rates() {
        check::<Rate>("100/s", Ok("100/s"));
        check::<Rate>("1/s", Ok("1/s"));
        check::<Rate>("100000/day", Ok("100000/day"));
        check::<Rate>("600/min", Ok("600/min"));
        check::<Rate>("10/15m", Ok("10/15m"));
        check::<Rate>("10 / hour", Ok("10/hour"));
        check::<Rate>("100", Err("no '/'"));
        check::<Rate>("0/s", Err("at least 1"));
        check::<Rate>("1.5/s", Err("not a whole number"));
        check::<Rate>("5/fortnight", Err("unknown unit"));
        let rate: Rate = "100000/day".parse().expect("valid");
        assert!((rate.per_second() - 1.157).abs() < 0.001);
    }

    #[test]
    fn sizes() {
        check::<Size>("1MiB", Ok("1MiB"));
        check::<Size>("512KiB", Ok("512KiB"));
        check::<Size>("10MB", Ok("10000000B"));
        check::<Size>("1 MiB", Ok("1MiB"));
        check::<Size>("1024", Err("write a number and a unit"));
        check::<Size>("lots", Err("invalid size"));
        check::<Size>("1XB", Err("invalid size"));
        assert_eq!("1MiB".parse::<Size>().map(Size::bytes), Ok(1 << 20));
    }

    #[test]
    fn round_trip_through_serde() {
        #[derive(Deserialize, Serialize)]
        struct Wrapper {
            every: Duration,
            limit: Rate,
            body: Size,
        }
        let json = r#"{"every":"15m","limit":"100/s","body":"1MiB"}"#;
        let parsed: Wrapper = serde_json::from_str(json).expect("valid");
        assert_eq!(serde_json::to_string(&parsed).expect("serializes"), json);
        let error = serde_json::from_str::<Wrapper>(r#"{"every":"15","limit":"1/s","body":"1B"}"#)
            .err()
            .map(|error| error.to_string());
        assert!(error.is_some_and(|e| e.contains("has no unit")));
    }
}
