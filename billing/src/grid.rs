//! The UTC period grid: periods of a fixed length, shifted by an offset from
//! the Unix epoch, so every meter with the same settings cuts time the same way.

use chrono::{DateTime, Duration, Utc};

/// A period grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    /// Length of one period.
    pub period: Duration,
    /// Shift of the grid from the epoch.
    pub offset: Duration,
}

impl Grid {
    /// Hourly periods on the hour.
    pub fn hourly() -> Grid {
        Grid {
            period: Duration::hours(1),
            offset: Duration::zero(),
        }
    }

    /// Start of the period holding `t`.
    pub fn floor(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        let p = self.period.num_seconds().max(1);
        let o = self.offset.num_seconds();
        let s = t.timestamp() - o;
        let start = s.div_euclid(p) * p + o;
        DateTime::from_timestamp(start, 0).unwrap_or(t)
    }

    /// The periods `[start, end)` covering `[from, to)`, `from` on the grid.
    pub fn periods(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> impl Iterator<Item = (DateTime<Utc>, DateTime<Utc>)> + '_ {
        let mut at = from;
        std::iter::from_fn(move || {
            if at >= to {
                return None;
            }
            let end = at + self.period;
            let p = (at, end);
            at = end;
            Some(p)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn floors_on_the_shifted_grid() {
        let g = Grid {
            period: Duration::hours(1),
            offset: Duration::minutes(30),
        };
        assert_eq!(
            g.floor(t("2026-10-01T10:29:59Z")),
            t("2026-10-01T09:30:00Z")
        );
        assert_eq!(
            g.floor(t("2026-10-01T10:30:00Z")),
            t("2026-10-01T10:30:00Z")
        );
        assert_eq!(
            Grid::hourly().floor(t("1969-12-31T23:59:59Z")),
            t("1969-12-31T23:00:00Z")
        );
        let n = g
            .periods(t("2026-10-01T09:30:00Z"), t("2026-10-01T12:30:00Z"))
            .count();
        assert_eq!(n, 3);
    }
}
