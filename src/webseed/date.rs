//! HTTP dates (RFC 9110 5.6.7): IMF-fixdate written from and read into unix seconds, with its
//! own civil-date conversion. Only IMF-fixdate is read; the obsolete formats read as `None`.

const DAY: u64 = 86_400;
/// 9999-12-31 23:59:59 UTC: later times are written as this (a four-digit year).
pub const MAX_UNIX: u64 = 253_402_300_799;

const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn is_leap(y: u64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

/// Leap years in 1..y (for y >= 1).
fn leaps_before(y: u64) -> u64 {
    let p = y - 1;
    p / 4 - p / 100 + p / 400
}

/// Days from 1970-01-01 to January 1st of `y` (y >= 1970).
fn days_to_year(y: u64) -> u64 {
    365 * (y - 1970) + leaps_before(y) - leaps_before(1970)
}

fn month_days(y: u64, m: usize) -> u64 {
    match m {
        1 if is_leap(y) => 29,
        1 => 28,
        3 | 5 | 8 | 10 => 30,
        _ => 31,
    }
}

/// (year, month 0-11, day 1-31) of a day count since 1970-01-01.
fn civil(days: u64) -> (u64, usize, u64) {
    // Every year has at most 366 days, so this underestimates, by a few years at most.
    let mut y = 1970 + days / 366;
    while days_to_year(y + 1) <= days {
        y += 1;
    }
    let mut left = days - days_to_year(y);
    let mut m = 0;
    while m < 11 && left >= month_days(y, m) {
        left -= month_days(y, m);
        m += 1;
    }
    (y, m, left + 1)
}

/// `Sun, 06 Nov 1994 08:49:37 GMT` for `unix` seconds (clamped to [`MAX_UNIX`]).
pub fn format(unix: u64) -> String {
    let t = unix.min(MAX_UNIX);
    let days = t / DAY;
    let secs = t % DAY;
    let (y, m, d) = civil(days);
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        WEEKDAYS[(days % 7) as usize],
        d,
        MONTHS[m],
        y,
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

fn digits(b: &[u8]) -> Option<u64> {
    if b.is_empty() || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0')))
}

/// Reads an IMF-fixdate (exactly 29 bytes; 1970 to 9999) into unix seconds.
pub fn parse(v: &[u8]) -> Option<u64> {
    if v.len() != 29 {
        return None;
    }
    let f = |a: usize, b: usize| v.get(a..b);
    let fixed: [(usize, &[u8]); 6] = [
        (3, b", "),
        (7, b" "),
        (11, b" "),
        (16, b" "),
        (19, b":"),
        (22, b":"),
    ];
    for (at, s) in fixed {
        if f(at, at + s.len())? != s {
            return None;
        }
    }
    if f(25, 29)? != b" GMT" {
        return None;
    }
    let wd = f(0, 3)?;
    if !WEEKDAYS.iter().any(|w| w.as_bytes() == wd) {
        return None;
    }
    let mon = f(8, 11)?;
    let m = MONTHS.iter().position(|n| n.as_bytes() == mon)?;
    let d = digits(f(5, 7)?)?;
    let y = digits(f(12, 16)?)?;
    let (hh, mm, ss) = (
        digits(f(17, 19)?)?,
        digits(f(20, 22)?)?,
        digits(f(23, 25)?)?,
    );
    // Second 60 is allowed by the grammar (leap second); read as the next minute's first.
    if y < 1970 || d == 0 || d > month_days(y, m) || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let before: u64 = (0..m).map(|i| month_days(y, i)).sum();
    let days = days_to_year(y) + before + d - 1;
    Some(days * DAY + hh * 3600 + mm * 60 + ss)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(format(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(format(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(format(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(format(4_107_542_399), "Sun, 28 Feb 2100 23:59:59 GMT");
        assert_eq!(format(4_107_542_400), "Mon, 01 Mar 2100 00:00:00 GMT");
        assert_eq!(format(u64::MAX), "Fri, 31 Dec 9999 23:59:59 GMT");
        assert_eq!(parse(b"Sun, 06 Nov 1994 08:49:37 GMT"), Some(784_111_777));
    }

    #[test]
    fn round_trip_over_the_range() {
        let mut t = 0u64;
        while t <= MAX_UNIX {
            assert_eq!(parse(format(t).as_bytes()), Some(t), "{t}");
            t += 7_777_777 + t / 3;
        }
        assert_eq!(parse(format(MAX_UNIX).as_bytes()), Some(MAX_UNIX));
    }

    #[test]
    fn refused() {
        for bad in [
            &b"Sunday, 06-Nov-94 08:49:37 GMT"[..],
            b"Sun Nov  6 08:49:37 1994",
            b"Sun, 06 Nov 1994 08:49:37 UTC",
            b"Sun, 31 Nov 1994 08:49:37 GMT",
            b"Sun, 29 Feb 1900 08:49:37 GMT",
            b"Sun, 06 Nov 1969 08:49:37 GMT",
            b"Sun, 06 Nov 1994 24:49:37 GMT",
            b"Xyz, 06 Nov 1994 08:49:37 GMT",
            b"Sun, 06 Nov 1994 08:49:3x GMT",
            b"Sun, 06 Nov 1994 08:49:37 GMT ",
            b"",
        ] {
            assert_eq!(parse(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
