//! Small value types that users write as text in playbooks and inventories: durations
//! (`500ms`, `2s`, `1m30s`, or a number of seconds), byte sizes (`10MiB`) and
//! counts-or-percentages (`3`, `"25%"`). Read from YAML nodes by the playbook and inventory
//! models; used by the runner for timeouts, limits and batch sizes.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};

use crate::yaml::lenient_template;

/// A length of time. YAML: `500ms`, `2s`, `1m30s`, `1h`, or a number of seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    pub fn from_secs(s: u64) -> Duration {
        Duration(std::time::Duration::from_secs(s))
    }
    pub fn from_millis(ms: u64) -> Duration {
        Duration(std::time::Duration::from_millis(ms))
    }
    pub fn std(self) -> std::time::Duration {
        self.0
    }

    /// Parses `500ms`, `2s`, `1m30s`, `1h`, `1.5s` or a plain number of seconds.
    pub fn parse(text: &str) -> Result<Duration, String> {
        let t = text.trim();
        if t.is_empty() {
            return Err("empty duration".into());
        }
        if let Ok(secs) = t.parse::<f64>() {
            return secs_to(secs, text);
        }
        let mut total = 0f64;
        let mut num = String::new();
        let mut chars = t.chars().peekable();
        let mut any = false;
        while let Some(c) = chars.next() {
            if c.is_ascii_digit() || c == '.' {
                num.push(c);
                continue;
            }
            if c.is_whitespace() {
                continue;
            }
            let mut unit = String::from(c);
            while let Some(&n) = chars.peek() {
                if n.is_ascii_alphabetic() {
                    unit.push(n);
                    chars.next();
                } else {
                    break;
                }
            }
            let value: f64 = num
                .parse()
                .map_err(|_| format!("`{text}` is not a duration"))?;
            let factor = match unit.as_str() {
                "ms" => 0.001,
                "s" => 1.0,
                "m" => 60.0,
                "h" => 3600.0,
                "d" => 86400.0,
                _ => return Err(format!("unknown unit `{unit}` in duration `{text}`")),
            };
            total += value * factor;
            num.clear();
            any = true;
        }
        if !num.is_empty() || !any {
            return Err(format!(
                "`{text}` is not a duration: give a unit to every number"
            ));
        }
        secs_to(total, text)
    }
}

fn secs_to(secs: f64, text: &str) -> Result<Duration, String> {
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(format!("`{text}` is out of range for a duration"));
    }
    Ok(Duration(std::time::Duration::from_secs_f64(secs)))
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if !ms.is_multiple_of(1000) {
            write!(f, "{ms}ms")
        } else {
            let s = ms / 1000;
            if s >= 60 && s.is_multiple_of(60) {
                write!(f, "{}m", s / 60)
            } else {
                write!(f, "{s}s")
            }
        }
    }
}

const DURATION_HELP: &str = "a duration such as `500ms`, `2s`, `1m30s`, or a number of seconds";

impl<'de> serde::Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(DURATION_HELP)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
                Ok(Duration::from_secs(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
                if v < 0 {
                    return Err(E::custom("a duration cannot be negative"));
                }
                Ok(Duration::from_secs(v as u64))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
                secs_to(v, &v.to_string()).map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                if lenient_template(v) {
                    return Ok(Duration::default());
                }
                Duration::parse(v).map_err(|m| {
                    E::custom(crate::yaml::custom_error(
                        m,
                        "not a duration",
                        format!("write {DURATION_HELP}"),
                    ))
                })
            }
        }
        d.deserialize_any(V)
    }
}

impl serde::Serialize for Duration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl schemars::JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A duration: `500ms`, `2s`, `1m30s`, `1h`, or a number of seconds.",
            "anyOf": [
                { "type": "number", "minimum": 0 },
                { "type": "string", "pattern": "^([0-9.]+(ms|s|m|h|d))+$|^[0-9.]+$|\\{\\{" }
            ]
        })
    }
}

/// A number of bytes. YAML: `1048576`, `512KiB`, `10MiB`, `1GiB`, `10MB`, `1k`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub fn parse(text: &str) -> Result<ByteSize, String> {
        let t = text.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let n: f64 = num
            .parse()
            .map_err(|_| format!("`{text}` is not a size such as `10MiB`"))?;
        let f: f64 = match unit.trim() {
            "" | "B" | "b" => 1.0,
            "k" | "K" | "KB" | "kB" => 1e3,
            "KiB" | "Ki" => 1024.0,
            "M" | "MB" => 1e6,
            "MiB" | "Mi" => 1024.0 * 1024.0,
            "G" | "GB" => 1e9,
            "GiB" | "Gi" => 1024.0 * 1024.0 * 1024.0,
            "T" | "TB" => 1e12,
            "TiB" | "Ti" => 1024f64.powi(4),
            u => return Err(format!("unknown size unit `{u}` in `{text}`")),
        };
        let v = n * f;
        if !v.is_finite() || v < 0.0 || v > u64::MAX as f64 {
            return Err(format!("`{text}` is out of range"));
        }
        Ok(ByteSize(v as u64))
    }
}

impl<'de> serde::Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as `1048576`, `512KiB` or `10MiB`")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                if lenient_template(v) {
                    return Ok(ByteSize(0));
                }
                ByteSize::parse(v).map_err(|m| {
                    E::custom(crate::yaml::custom_error(
                        m,
                        "not a size",
                        "write a number of bytes, or `512KiB`, `10MiB`, `1GiB`",
                    ))
                })
            }
        }
        d.deserialize_any(V)
    }
}

impl schemars::JsonSchema for ByteSize {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ByteSize".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A size in bytes: a number, or `512KiB`, `10MiB`, `1GiB`, `10MB`.",
            "type": ["integer", "string"]
        })
    }
}

/// A count or a share of a total: `3` or `"25%"`. Batch sizes and failure thresholds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CountOrPercent {
    Count(u64),
    Percent(f64),
}

impl CountOrPercent {
    /// The count this stands for out of `total` (percentages round up, at least 1 when > 0%).
    pub fn of(self, total: usize) -> usize {
        match self {
            CountOrPercent::Count(n) => n as usize,
            CountOrPercent::Percent(p) => {
                let v = (total as f64 * p / 100.0).ceil() as usize;
                if p > 0.0 { v.max(1) } else { 0 }
            }
        }
    }
}

impl fmt::Display for CountOrPercent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CountOrPercent::Count(n) => write!(f, "{n}"),
            CountOrPercent::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl<'de> serde::Deserialize<'de> for CountOrPercent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CountOrPercent;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number or a percentage such as \"25%\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<CountOrPercent, E> {
                Ok(CountOrPercent::Count(v))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<CountOrPercent, E> {
                Err(E::custom(
                    "expected a number or a percentage, found a negative number",
                ))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<CountOrPercent, E> {
                if lenient_template(v) {
                    return Ok(CountOrPercent::Count(1));
                }
                let t = v.trim();
                if let Some(p) = t.strip_suffix('%') {
                    let p: f64 = p.trim().parse().map_err(|_| {
                        E::custom(crate::yaml::custom_error(
                            format!("`{v}` is not a percentage"),
                            "not a percentage",
                            "write a count such as `3` or a percentage such as `\"25%\"`",
                        ))
                    })?;
                    if !(0.0..=100.0).contains(&p) {
                        return Err(E::custom(crate::yaml::custom_error(
                            format!("`{v}` must be between 0% and 100%"),
                            "out of range",
                            "write a percentage from 0% to 100%",
                        )));
                    }
                    Ok(CountOrPercent::Percent(p))
                } else {
                    t.parse::<u64>().map(CountOrPercent::Count).map_err(|_| {
                        E::custom(crate::yaml::custom_error(
                            format!("`{v}` is not a count or a percentage"),
                            "not a count or a percentage",
                            "write a count such as `3` or a percentage such as `\"25%\"`",
                        ))
                    })
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl schemars::JsonSchema for CountOrPercent {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "CountOrPercent".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A count (`3`) or a percentage of the hosts (`\"25%\"`).",
            "anyOf": [
                { "type": "integer", "minimum": 0 },
                { "type": "string", "pattern": "^[0-9.]+%$" }
            ]
        })
    }
}

/// Now, in UTC, as RFC 3339 (`2026-12-01T20:43:41Z`), for reports.
pub fn utc_now_rfc3339() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(now.as_secs() as i64)
}

/// Seconds since 1970 as an RFC 3339 UTC time.
fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_157_821), "2026-12-01T20:43:41Z");
    }

    #[test]
    fn durations() {
        assert_eq!(Duration::parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(Duration::parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(Duration::parse("2"), Ok(Duration::from_secs(2)));
        assert_eq!(Duration::parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(Duration::parse("5 parsecs").is_err());
        assert!(Duration::parse("10").is_ok());
        assert!(Duration::parse("1m30").is_err());
        assert_eq!(Duration::from_secs(90).to_string(), "90s");
    }

    #[test]
    fn sizes_and_percentages() {
        assert_eq!(ByteSize::parse("10MiB"), Ok(ByteSize(10 * 1024 * 1024)));
        assert_eq!(ByteSize::parse("512"), Ok(ByteSize(512)));
        assert!(ByteSize::parse("10 parsecs").is_err());
        assert_eq!(CountOrPercent::Percent(25.0).of(10), 3);
        assert_eq!(CountOrPercent::Percent(1.0).of(10), 1);
        assert_eq!(CountOrPercent::Count(4).of(10), 4);
    }
}
