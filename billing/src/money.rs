//! Currencies and how money is shown to people.
//!
//! The rounding rule is not here on purpose: money is rounded in exactly one
//! place, the SQL function `gpuwatch_round_money` (migration 0019), half away
//! from zero to two decimals, once per invoice line. Rust code carries
//! `rust_decimal::Decimal` values and never rounds them (its `round_dp` is
//! banker's rounding, which is not our rule).

use rust_decimal::Decimal;
use serde::Serialize;

/// ISO 4217 currencies the meter accepts: all with two minor digits, since
/// invoices are kept in hundredths. A price in any other code is bad input.
const KNOWN: &[(&str, &str)] = &[
    ("CNY", "¥"),
    ("USD", "$"),
    ("EUR", "€"),
    ("GBP", "£"),
    ("HKD", "HK$"),
    ("SGD", "S$"),
    ("AUD", "A$"),
    ("CAD", "C$"),
    ("CHF", "CHF "),
];

/// A currency the meter knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Currency {
    /// ISO 4217 code.
    pub code: &'static str,
    /// Symbol shown before amounts.
    pub symbol: &'static str,
}

impl Currency {
    /// Looks a code up; the error says which codes are known.
    pub fn parse(code: &str) -> Result<Currency, String> {
        KNOWN
            .iter()
            .find(|(c, _)| *c == code.trim())
            .map(|&(code, symbol)| Currency { code, symbol })
            .ok_or_else(|| {
                format!(
                    "unknown currency {code:?}; known: {}",
                    KNOWN.iter().map(|(c, _)| *c).collect::<Vec<_>>().join(", ")
                )
            })
    }

    /// `¥1,234.50`-style text for people: symbol, two decimals, no grouping
    /// separators (CSV readers choke on them). `amount` must already be
    /// rounded money (two decimals); this only formats.
    pub fn display(&self, amount: Decimal) -> String {
        let mut a = amount;
        a.rescale(2);
        if a.is_sign_negative() && !a.is_zero() {
            format!("-{}{}", self.symbol, -a)
        } else {
            format!("{}{}", self.symbol, a.abs())
        }
    }
}

/// Shows money with the symbol of its currency, or the code for one not known.
pub fn display(amount: Decimal, code: &str) -> String {
    match Currency::parse(code) {
        Ok(c) => c.display(amount),
        Err(_) => format!("{amount} {code}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn shows_symbol_and_two_decimals() {
        let cny = Currency::parse("CNY").unwrap();
        assert_eq!(cny.display(Decimal::from_str("12.3").unwrap()), "¥12.30");
        assert_eq!(cny.display(Decimal::from_str("-0.05").unwrap()), "-¥0.05");
        assert_eq!(cny.display(Decimal::ZERO), "¥0.00");
    }

    #[test]
    fn unknown_codes_are_refused_by_name() {
        let e = Currency::parse("XYZ").unwrap_err();
        assert!(e.contains("\"XYZ\"") && e.contains("CNY"), "{e}");
    }
}
