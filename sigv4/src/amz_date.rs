//! The `x-amz-date` timestamp (`YYYYMMDDTHHMMSSZ`) and the date of the credential scope.

use std::fmt;

/// A UTC instant at one-second resolution, formatted the way SigV4 wants it.
///
/// Built from Unix seconds so that it works where no calendar library is available (wasm).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AmzDate {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
}

impl AmzDate {
    /// Converts seconds since the Unix epoch (UTC) to a calendar date and time.
    pub fn from_unix_seconds(secs: u64) -> Self {
        let days = (secs / 86_400) as i64;
        let rem = secs % 86_400;
        let (year, month, day) = civil_from_days(days);
        Self {
            year,
            month,
            day,
            hour: (rem / 3600) as u32,
            minute: ((rem % 3600) / 60) as u32,
            second: (rem % 60) as u32,
        }
    }

    /// `YYYYMMDD`: the first element of the credential scope.
    pub fn date(&self) -> String {
        let mut out = String::with_capacity(16);
        self.push_date(&mut out);
        out
    }

    /// `YYYYMMDDTHHMMSSZ`: the value of `x-amz-date`.
    pub fn date_time(&self) -> String {
        let mut out = String::with_capacity(16);
        self.push_date(&mut out);
        out.push('T');
        for part in [self.hour, self.minute, self.second] {
            push_two_digits(&mut out, part);
        }
        out.push('Z');
        out
    }

    /// Written two digits at a time: every signed request formats its date several times
    /// (the grant's day, the credential scope, `x-amz-date`), and the formatting machinery's
    /// padding, or a loop per digit, costs more than the arithmetic.
    fn push_date(&self, out: &mut String) {
        match u32::try_from(self.year) {
            Ok(year) if year < 10_000 => {
                push_two_digits(out, year / 100);
                push_two_digits(out, year % 100);
            }
            // From Unix seconds the year is at least 1970; past 9999 it takes more digits.
            _ => out.push_str(&self.year.to_string()),
        }
        push_two_digits(out, self.month);
        push_two_digits(out, self.day);
    }
}

impl fmt::Display for AmzDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.date_time())
    }
}

/// `value` (below 100) as two decimal digits, zero first.
fn push_two_digits(out: &mut String, value: u32) {
    out.push(char::from(b'0' + (value / 10 % 10) as u8));
    out.push(char::from(b'0' + (value % 10) as u8));
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_the_aws_example_instant() {
        // 2013-05-24T00:00:00Z, the instant of AWS's S3 signing examples.
        let d = AmzDate::from_unix_seconds(1_369_353_600);
        assert_eq!(d.date(), "20130524");
        assert_eq!(d.date_time(), "20130524T000000Z");
    }

    #[test]
    fn handles_epoch_leap_days_and_end_of_year() {
        assert_eq!(
            AmzDate::from_unix_seconds(0).date_time(),
            "19700101T000000Z"
        );
        // 2024-02-29T23:59:59Z
        assert_eq!(
            AmzDate::from_unix_seconds(1_709_251_199).date_time(),
            "20240229T235959Z"
        );
        // 2026-12-31T12:34:56Z
        assert_eq!(
            AmzDate::from_unix_seconds(1_798_720_496).date_time(),
            "20261231T123456Z"
        );
        // 10000-01-01T00:00:00Z: a fifth digit is written, not cut.
        assert_eq!(
            AmzDate::from_unix_seconds(253_402_300_800).to_string(),
            "100000101T000000Z"
        );
    }
}
