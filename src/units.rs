//! Byte counts and byte rates as operators write them: a plain number of bytes, or a number
//! with a unit, `k`/`M`/`G`/`T` (1000ⁿ, also written `kB`, `MB`, ...) or `KiB`/`MiB`/`GiB`/`TiB`
//! (1024ⁿ); rates may end in `/s`. `"10MiB"` is 10,485,760, `"1.5G"` 1,500,000,000. Pure
//! parsing and formatting; it knows nothing of where the values are used.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A number of bytes (a quota), written as a number or with a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize)]
#[serde(transparent)]
pub struct ByteSize(pub u64);

/// Bytes per second (a limit; 0 = unlimited), written as a number or with a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize)]
#[serde(transparent)]
pub struct ByteRate(pub u64);

const UNITS: &[(&str, u64)] = &[
    ("", 1),
    ("b", 1),
    ("k", 1_000),
    ("kb", 1_000),
    ("m", 1_000_000),
    ("mb", 1_000_000),
    ("g", 1_000_000_000),
    ("gb", 1_000_000_000),
    ("t", 1_000_000_000_000),
    ("tb", 1_000_000_000_000),
    ("kib", 1 << 10),
    ("mib", 1 << 20),
    ("gib", 1 << 30),
    ("tib", 1 << 40),
];

/// Parses a byte count: `"1048576"`, `"10MiB"`, `"1.5 GB"`, `"2T"`.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = (t[..split].trim(), t[split..].trim());
    if num.is_empty() {
        return Err(format!("{text:?} is not a number of bytes"));
    }
    let lower = unit.to_ascii_lowercase();
    let Some(&(_, mult)) = UNITS.iter().find(|(u, _)| *u == lower) else {
        return Err(format!(
            "{text:?}: unknown unit {unit:?} (use k, M, G, T for 1000ⁿ or KiB, MiB, GiB, TiB \
             for 1024ⁿ)"
        ));
    };
    let bad = || format!("{text:?} is not a number of bytes");
    let value = match num.split_once('.') {
        None => num
            .parse::<u64>()
            .map_err(|_| bad())?
            .checked_mul(mult)
            .ok_or_else(|| format!("{text:?} is too large"))?,
        Some((whole, frac)) => {
            if frac.is_empty() || frac.contains('.') || frac.len() > 9 {
                return Err(bad());
            }
            let whole = if whole.is_empty() {
                0
            } else {
                whole.parse::<u64>().map_err(|_| bad())?
            };
            let scale = 10u128.pow(frac.len() as u32);
            let frac: u128 = frac.parse().map_err(|_| bad())?;
            let total = (u128::from(whole) * scale + frac) * u128::from(mult) / scale;
            u64::try_from(total).map_err(|_| format!("{text:?} is too large"))?
        }
    };
    Ok(value)
}

/// Parses a rate in bytes per second: a byte count, optionally followed by `/s`.
pub fn parse_rate(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let t = t.strip_suffix("/s").unwrap_or(t);
    parse_bytes(t)
}

/// `n` bytes for people: `10.0 MiB`, `512 B`.
pub fn format_bytes(n: u64) -> String {
    const NAMES: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < NAMES.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", NAMES[i])
    }
}

/// Accepts an integer or a string with a unit.
fn deserialize_with<'de, D: serde::Deserializer<'de>>(
    d: D,
    parse: fn(&str) -> Result<u64, String>,
) -> Result<u64, D::Error> {
    struct V(fn(&str) -> Result<u64, String>);
    impl serde::de::Visitor<'_> for V {
        type Value = u64;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a number of bytes, or a string such as \"10MiB\" or \"80M\"")
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<u64, E> {
            Ok(v)
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<u64, E> {
            u64::try_from(v).map_err(|_| E::custom(format!("{v} is negative")))
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<u64, E> {
            (self.0)(v).map_err(E::custom)
        }
    }
    d.deserialize_any(V(parse))
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_with(d, parse_bytes).map(ByteSize)
    }
}

impl<'de> Deserialize<'de> for ByteRate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_with(d, parse_rate).map(ByteRate)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_bytes(self.0))
    }
}

impl fmt::Display for ByteRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 == 0 {
            f.write_str("unlimited")
        } else {
            write!(f, "{}/s", format_bytes(self.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_decimal_or_binary_as_written() {
        for (text, want) in [
            ("0", 0),
            ("16384", 16384),
            ("1k", 1000),
            ("1K", 1000),
            ("1kB", 1000),
            ("10M", 10_000_000),
            ("10MB", 10_000_000),
            ("10 MiB", 10 << 20),
            ("1.5G", 1_500_000_000),
            ("0.5KiB", 512),
            ("2TiB", 2 << 40),
            ("3 TB", 3_000_000_000_000),
        ] {
            assert_eq!(parse_bytes(text), Ok(want), "{text}");
        }
        assert_eq!(parse_rate("8MiB/s"), Ok(8 << 20));
        assert_eq!(parse_rate("100k"), Ok(100_000));
    }

    #[test]
    fn bad_values_say_why() {
        for text in [
            "",
            "MiB",
            "ten",
            "10 megs",
            "1.2.3M",
            "-5",
            "1.",
            "99999999999T",
        ] {
            let e = parse_bytes(text).unwrap_err();
            assert!(e.contains(&format!("{text:?}")), "{text}: {e}");
        }
        assert!(parse_bytes("10 megs").unwrap_err().contains("unknown unit"));
    }

    #[test]
    fn toml_takes_numbers_and_strings() {
        #[derive(Deserialize)]
        struct T {
            a: ByteRate,
            b: ByteSize,
        }
        let t: T = toml::from_str("a = 1000\nb = \"1 GiB\"\n").unwrap();
        assert_eq!((t.a, t.b), (ByteRate(1000), ByteSize(1 << 30)));
        let e = toml::from_str::<T>("a = \"fast\"\nb = 1\n")
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("\"fast\""), "{e}");
        assert_eq!(ByteRate(10 << 20).to_string(), "10.0 MiB/s");
        assert_eq!(ByteRate(0).to_string(), "unlimited");
    }
}
