//! Numbers, ages and names in the few characters a column has. Pure and unit-tested.

use crate::rates::Delta;
use crate::snapshot::EpochMicros;

/// A rate or mean in at most 7 characters: `0`, `0.25`, `12.5`, `1234`, `123.4k`, `1234.5M`;
/// `n/a` and `reset` for the two ways there is no value.
pub fn delta(delta: Delta) -> String {
    match delta {
        Delta::NotAvailable => "n/a".into(),
        Delta::Reset => "reset".into(),
        Delta::Value(v) => number(v),
    }
}

pub fn number(v: f64) -> String {
    match v {
        0.0 => "0".into(),
        v if v < 10.0 => format!("{v:.2}"),
        v if v < 1000.0 => format!("{v:.1}"),
        v if v < 100_000.0 => format!("{v:.0}"),
        v if v < 10e6 => format!("{:.1}k", v / 1e3),
        v if v < 10e9 => format!("{:.1}M", v / 1e6),
        v => format!("{:.1}G", v / 1e9),
    }
}

/// A share as a whole percentage (`25%`), with one decimal near the ends where it matters
/// (`99.4%`, `0.5%`).
pub fn percent(delta: Delta) -> String {
    match delta {
        Delta::Value(v) => ratio(v),
        other => self::delta(other),
    }
}

pub fn ratio(v: f64) -> String {
    let p = v * 100.0;
    if (p > 0.0 && p < 1.0) || (p > 99.0 && p < 100.0) {
        format!("{p:.1}%")
    } else {
        format!("{p:.0}%")
    }
}

/// A count in at most 6 characters: `99999`, `123.4k`, `12.3M`.
pub fn count(n: u64) -> String {
    match n {
        0..100_000 => n.to_string(),
        100_000..100_000_000 => format!("{:.1}k", n as f64 / 1e3),
        100_000_000..100_000_000_000 => format!("{:.1}M", n as f64 / 1e6),
        _ => format!("{:.1}G", n as f64 / 1e9),
    }
}

/// An age or a wait: `0.3s`, `12s`, `3m05s`, `2h10m`, `3d04h`.
pub fn age(secs: f64) -> String {
    let secs = secs.max(0.0);
    if secs < 10.0 {
        return format!("{secs:.1}s");
    }
    let s = secs.round() as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// Milliseconds: `0.42ms`, `12.3ms`, `1.2s`.
pub fn millis(ms: f64) -> String {
    if ms < 1000.0 {
        format!("{}ms", number(ms))
    } else {
        age(ms / 1000.0)
    }
}

/// Bytes as PostgreSQL's `pg_size_pretty` would round them: `48 kB`, `12 MB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "kB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 10_240.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{:.0} {}", value, UNITS[unit])
}

/// `HH:MM:SS UTC` of a server timestamp: UTC because the snapshot does not carry the server's
/// time zone and the console has no time-zone database.
pub fn clock(at: EpochMicros) -> String {
    let secs = (at / 1e6).floor() as i64;
    let day = secs.rem_euclid(86_400);
    format!(
        "{:02}:{:02}:{:02} UTC",
        day / 3600,
        day % 3600 / 60,
        day % 60
    )
}

/// `text` in at most `width` characters, cut with `…`.
pub fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut out: String = text.chars().take(width - 1).collect();
    out.push('…');
    out
}

/// A sparkline in text, one character per sample, for table cells: blank for zero, `▁`..`█`
/// scaled to the largest sample shown, `·` where there is no value (a reset, a gap).
pub fn spark(samples: &[Option<f64>]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let max = samples.iter().flatten().copied().fold(0.0_f64, f64::max);
    samples
        .iter()
        .map(|sample| match sample {
            None => '·',
            Some(v) if *v <= 0.0 || max <= 0.0 => ' ',
            Some(v) => {
                let level = ((v / max) * (BARS.len() as f64)).ceil() as usize;
                BARS[level.clamp(1, BARS.len()) - 1]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_stay_within_seven_characters() {
        assert_eq!(delta(Delta::Value(0.0)), "0");
        assert_eq!(delta(Delta::Value(0.5)), "0.50");
        assert_eq!(delta(Delta::Value(12.34)), "12.3");
        assert_eq!(delta(Delta::Value(1234.56)), "1235");
        assert_eq!(delta(Delta::Value(123_456.0)), "123.5k");
        assert_eq!(delta(Delta::Value(2.5e9)), "2500.0M");
        assert_eq!(delta(Delta::Value(2.5e10)), "25.0G");
        assert_eq!(delta(Delta::Reset), "reset");
        assert_eq!(delta(Delta::NotAvailable), "n/a");
        for v in [9.999, 999.99, 99_999.4, 99_999_999.0, 9.9e12] {
            assert!(number(v).chars().count() <= 7, "{v}: {}", number(v));
        }
    }

    #[test]
    fn percentages_keep_a_decimal_near_the_ends() {
        assert_eq!(percent(Delta::Value(0.25)), "25%");
        assert_eq!(percent(Delta::Value(0.994)), "99.4%");
        assert_eq!(percent(Delta::Value(1.0)), "100%");
        assert_eq!(percent(Delta::Value(0.004)), "0.4%");
        assert_eq!(percent(Delta::Value(0.0)), "0%");
    }

    #[test]
    fn counts_ages_sizes_and_clocks() {
        assert_eq!(count(99_999), "99999");
        assert_eq!(count(1_234_567), "1234.6k");
        assert_eq!(age(0.34), "0.3s");
        assert_eq!(age(12.4), "12s");
        assert_eq!(age(185.0), "3m05s");
        assert_eq!(age(7800.0), "2h10m");
        assert_eq!(age(3.0 * 86_400.0 + 4.0 * 3600.0), "3d04h");
        assert_eq!(millis(0.42), "0.42ms");
        assert_eq!(millis(2500.0), "2.5s");
        assert_eq!(bytes(49_152), "48 kB");
        assert_eq!(bytes(100), "100 bytes");
        assert_eq!(clock(1_700_000_003.5e6), "22:13:23 UTC");
    }

    #[test]
    fn names_are_cut_with_an_ellipsis() {
        assert_eq!(fit("tv_product", 10), "tv_product");
        assert_eq!(fit("tv_product", 6), "tv_pr…");
        assert_eq!(fit("tv_product", 0), "");
    }

    #[test]
    fn text_sparklines_scale_to_their_maximum() {
        assert_eq!(
            spark(&[Some(0.0), Some(1.0), Some(4.0), None, Some(8.0)]),
            " ▁▄·█"
        );
        assert_eq!(spark(&[Some(0.0), Some(0.0)]), "  ");
        assert_eq!(spark(&[]), "");
    }
}
