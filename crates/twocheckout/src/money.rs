//! Exact money: [`rust_decimal::Decimal`] amounts tagged with an ISO 4217 [`Currency`].
//!
//! Amounts are never floats. [`Money::round`] rounds to the currency's minor unit
//! (JPY 0, USD 2, BHD 3, CLF 4) **half away from zero** (`0.125 USD → 0.13`,
//! `-0.125 USD → -0.13`), the commercial rounding used on invoices, not banker's rounding.

use std::fmt;
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Active ISO 4217 currency codes with their minor units (list one, funds codes
/// included; precious metals, SDR and testing codes without a minor unit excluded).
/// Codes withdrawn in recent years but still possible in old data (ANG, CUC, SLL, ZWL)
/// are kept next to their successors (XCG, SLE, ZWG).
const CURRENCIES: &[(&str, u8)] = &[
    ("AED", 2),
    ("AFN", 2),
    ("ALL", 2),
    ("AMD", 2),
    ("ANG", 2),
    ("AOA", 2),
    ("ARS", 2),
    ("AUD", 2),
    ("AWG", 2),
    ("AZN", 2),
    ("BAM", 2),
    ("BBD", 2),
    ("BDT", 2),
    ("BGN", 2),
    ("BHD", 3),
    ("BIF", 0),
    ("BMD", 2),
    ("BND", 2),
    ("BOB", 2),
    ("BOV", 2),
    ("BRL", 2),
    ("BSD", 2),
    ("BTN", 2),
    ("BWP", 2),
    ("BYN", 2),
    ("BZD", 2),
    ("CAD", 2),
    ("CDF", 2),
    ("CHE", 2),
    ("CHF", 2),
    ("CHW", 2),
    ("CLF", 4),
    ("CLP", 0),
    ("CNY", 2),
    ("COP", 2),
    ("COU", 2),
    ("CRC", 2),
    ("CUC", 2),
    ("CUP", 2),
    ("CVE", 2),
    ("CZK", 2),
    ("DJF", 0),
    ("DKK", 2),
    ("DOP", 2),
    ("DZD", 2),
    ("EGP", 2),
    ("ERN", 2),
    ("ETB", 2),
    ("EUR", 2),
    ("FJD", 2),
    ("FKP", 2),
    ("GBP", 2),
    ("GEL", 2),
    ("GHS", 2),
    ("GIP", 2),
    ("GMD", 2),
    ("GNF", 0),
    ("GTQ", 2),
    ("GYD", 2),
    ("HKD", 2),
    ("HNL", 2),
    ("HTG", 2),
    ("HUF", 2),
    ("IDR", 2),
    ("ILS", 2),
    ("INR", 2),
    ("IQD", 3),
    ("IRR", 2),
    ("ISK", 0),
    ("JMD", 2),
    ("JOD", 3),
    ("JPY", 0),
    ("KES", 2),
    ("KGS", 2),
    ("KHR", 2),
    ("KMF", 0),
    ("KPW", 2),
    ("KRW", 0),
    ("KWD", 3),
    ("KYD", 2),
    ("KZT", 2),
    ("LAK", 2),
    ("LBP", 2),
    ("LKR", 2),
    ("LRD", 2),
    ("LSL", 2),
    ("LYD", 3),
    ("MAD", 2),
    ("MDL", 2),
    ("MGA", 2),
    ("MKD", 2),
    ("MMK", 2),
    ("MNT", 2),
    ("MOP", 2),
    ("MRU", 2),
    ("MUR", 2),
    ("MVR", 2),
    ("MWK", 2),
    ("MXN", 2),
    ("MXV", 2),
    ("MYR", 2),
    ("MZN", 2),
    ("NAD", 2),
    ("NGN", 2),
    ("NIO", 2),
    ("NOK", 2),
    ("NPR", 2),
    ("NZD", 2),
    ("OMR", 3),
    ("PAB", 2),
    ("PEN", 2),
    ("PGK", 2),
    ("PHP", 2),
    ("PKR", 2),
    ("PLN", 2),
    ("PYG", 0),
    ("QAR", 2),
    ("RON", 2),
    ("RSD", 2),
    ("RUB", 2),
    ("RWF", 0),
    ("SAR", 2),
    ("SBD", 2),
    ("SCR", 2),
    ("SDG", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("SHP", 2),
    ("SLE", 2),
    ("SLL", 2),
    ("SOS", 2),
    ("SRD", 2),
    ("SSP", 2),
    ("STN", 2),
    ("SVC", 2),
    ("SYP", 2),
    ("SZL", 2),
    ("THB", 2),
    ("TJS", 2),
    ("TMT", 2),
    ("TND", 3),
    ("TOP", 2),
    ("TRY", 2),
    ("TTD", 2),
    ("TWD", 2),
    ("TZS", 2),
    ("UAH", 2),
    ("UGX", 0),
    ("USD", 2),
    ("USN", 2),
    ("UYI", 0),
    ("UYU", 2),
    ("UYW", 4),
    ("UZS", 2),
    ("VED", 2),
    ("VES", 2),
    ("VND", 0),
    ("VUV", 0),
    ("WST", 2),
    ("XAF", 0),
    ("XCD", 2),
    ("XCG", 2),
    ("XOF", 0),
    ("XPF", 0),
    ("YER", 2),
    ("ZAR", 2),
    ("ZMW", 2),
    ("ZWG", 2),
    ("ZWL", 2),
];

/// An ISO 4217 currency with its minor unit.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency {
    code: &'static str,
    minor_units: u8,
}

/// Money errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// Not an active ISO 4217 code.
    #[error("unknown ISO 4217 currency code {0:?}")]
    UnknownCurrency(String),
    /// Not a plain decimal (`-?digits[.digits]`, at most 28 significant digits).
    #[error("invalid amount {0:?}: expected a plain decimal such as -12.50")]
    InvalidAmount(String),
    /// Arithmetic between different currencies.
    #[error("cannot combine {left} and {right} amounts")]
    CurrencyMismatch {
        /// Left operand currency.
        left: Currency,
        /// Right operand currency.
        right: Currency,
    },
}

impl Currency {
    /// Look up a code (case-insensitive, surrounding whitespace ignored).
    pub fn from_code(code: &str) -> Result<Currency, MoneyError> {
        let upper = code.trim().to_ascii_uppercase();
        CURRENCIES
            .iter()
            .find(|(c, _)| *c == upper)
            .map(|(code, minor_units)| Currency {
                code,
                minor_units: *minor_units,
            })
            .ok_or_else(|| MoneyError::UnknownCurrency(code.to_owned()))
    }

    /// The three-letter code, upper-case.
    pub fn code(self) -> &'static str {
        self.code
    }

    /// Number of decimal places of the minor unit.
    pub fn minor_units(self) -> u32 {
        u32::from(self.minor_units)
    }

    /// Every currency in the table.
    pub fn all() -> impl Iterator<Item = Currency> {
        CURRENCIES.iter().map(|(code, minor_units)| Currency {
            code,
            minor_units: *minor_units,
        })
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Currency({})", self.code)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code)
    }
}

impl FromStr for Currency {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Currency::from_code(s)
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code)
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Currency::from_code(&s).map_err(serde::de::Error::custom)
    }
}

/// Parse a plain decimal string: optional `-`, digits, optional `.` and digits. No
/// exponent, no `+`, no spaces, no thousands separators.
pub fn parse_decimal(s: &str) -> Option<Decimal> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    let (int, frac) = match digits.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (digits, None),
    };
    let ok = !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()));
    if !ok {
        return None;
    }
    Decimal::from_str_exact(s).ok()
}

/// The canonical text of a decimal: no trailing zeros, no `-0` (`10.0`, `10.00` and
/// `10` all give `10`).
pub fn canonical_decimal(d: Decimal) -> String {
    if d.is_zero() {
        return "0".to_owned();
    }
    d.normalize().to_string()
}

/// An exact amount in a currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    /// The amount as received (not rounded).
    pub amount: Decimal,
    /// Its currency.
    pub currency: Currency,
}

impl Money {
    /// Wrap an amount.
    pub fn new(amount: Decimal, currency: Currency) -> Money {
        Money { amount, currency }
    }

    /// Zero in a currency.
    pub fn zero(currency: Currency) -> Money {
        Money::new(Decimal::ZERO, currency)
    }

    /// Parse a plain decimal string (see [`parse_decimal`]).
    pub fn parse(amount: &str, currency: Currency) -> Result<Money, MoneyError> {
        parse_decimal(amount)
            .map(|a| Money::new(a, currency))
            .ok_or_else(|| MoneyError::InvalidAmount(amount.to_owned()))
    }

    /// Rounded to the currency's minor unit, half away from zero, with exactly
    /// `minor_units` decimal places.
    pub fn round(&self) -> Money {
        let mut a = self.amount.round_dp_with_strategy(
            self.currency.minor_units(),
            RoundingStrategy::MidpointAwayFromZero,
        );
        a.rescale(self.currency.minor_units());
        Money::new(a, self.currency)
    }

    /// True when the amount has no digits below the minor unit.
    pub fn is_rounded(&self) -> bool {
        self.amount.normalize().scale() <= self.currency.minor_units()
    }

    /// True for amounts below zero (refunds, reversals).
    pub fn is_negative(&self) -> bool {
        self.amount.is_sign_negative() && !self.amount.is_zero()
    }

    /// True for zero.
    pub fn is_zero(&self) -> bool {
        self.amount.is_zero()
    }

    /// Sum, if the currencies match.
    pub fn checked_add(&self, other: &Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        self.amount
            .checked_add(other.amount)
            .map(|a| Money::new(a, self.currency))
            .ok_or_else(|| MoneyError::InvalidAmount("overflow".into()))
    }

    /// Difference, if the currencies match.
    pub fn checked_sub(&self, other: &Money) -> Result<Money, MoneyError> {
        self.checked_add(&-*other)
    }

    fn same_currency(&self, other: &Money) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyError::CurrencyMismatch {
                left: self.currency,
                right: other.currency,
            })
        }
    }
}

impl std::ops::Neg for Money {
    type Output = Money;
    fn neg(self) -> Money {
        Money::new(-self.amount, self.currency)
    }
}

impl fmt::Display for Money {
    /// `12.50 USD`: at least the minor unit's decimal places, more if the amount has them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut a = self.amount;
        if a.scale() < self.currency.minor_units() {
            a.rescale(self.currency.minor_units());
        }
        write!(f, "{a} {}", self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn c(code: &str) -> Currency {
        Currency::from_code(code).unwrap()
    }

    #[test]
    fn minor_units_table() {
        assert_eq!(c("JPY").minor_units(), 0);
        assert_eq!(c("usd").minor_units(), 2);
        assert_eq!(c(" BHD ").minor_units(), 3);
        assert_eq!(c("KWD").minor_units(), 3);
        assert_eq!(c("CLF").minor_units(), 4);
        assert_eq!(c("RON").code(), "RON");
        assert_eq!(
            Currency::from_code("XAU"),
            Err(MoneyError::UnknownCurrency("XAU".into()))
        );
        assert!(Currency::from_code("US").is_err());
        let mut codes: Vec<_> = Currency::all().map(Currency::code).collect();
        let n = codes.len();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), n, "duplicate code in table");
        assert!(n > 150);
        assert!(codes
            .iter()
            .all(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase())));
    }

    #[test]
    fn rounding_half_away_from_zero() {
        let r = |a: &str, cur: &str| Money::parse(a, c(cur)).unwrap().round().to_string();
        assert_eq!(r("0.125", "USD"), "0.13 USD");
        assert_eq!(r("-0.125", "USD"), "-0.13 USD");
        assert_eq!(r("0.135", "USD"), "0.14 USD");
        assert_eq!(r("10", "USD"), "10.00 USD");
        assert_eq!(r("1234.5", "JPY"), "1235 JPY");
        assert_eq!(r("-0.5", "JPY"), "-1 JPY");
        assert_eq!(r("1.0005", "BHD"), "1.001 BHD");
    }

    #[test]
    fn strict_decimal_grammar() {
        for ok in ["0", "10.00", "-5.5", "007", "0.0000"] {
            assert!(parse_decimal(ok).is_some(), "{ok}");
        }
        for bad in [
            "",
            "-",
            "+1",
            "1.",
            ".5",
            "1e3",
            "1_000",
            "1,00",
            " 1",
            "1 ",
            "0x10",
            "1.2.3",
            "--1",
            "99999999999999999999999999999999",
        ] {
            assert!(parse_decimal(bad).is_none(), "{bad}");
        }
        assert_eq!(
            Money::parse("x", c("USD")),
            Err(MoneyError::InvalidAmount("x".into()))
        );
    }

    #[test]
    fn canonical_form() {
        let d = |s| canonical_decimal(parse_decimal(s).unwrap());
        assert_eq!(d("10.0"), "10");
        assert_eq!(d("10.00"), d("10"));
        assert_eq!(d("-0.00"), "0");
        assert_eq!(d("-12.50"), "-12.5");
    }

    #[test]
    fn arithmetic_and_serde() {
        let a = Money::parse("10.50", c("EUR")).unwrap();
        let b = Money::parse("-0.5", c("EUR")).unwrap();
        assert_eq!(a.checked_add(&b).unwrap().to_string(), "10.00 EUR");
        assert_eq!(a.checked_sub(&b).unwrap().to_string(), "11.00 EUR");
        assert!(b.is_negative() && !a.is_negative() && Money::zero(c("EUR")).is_zero());
        assert_eq!(
            a.checked_add(&Money::zero(c("USD"))),
            Err(MoneyError::CurrencyMismatch {
                left: c("EUR"),
                right: c("USD")
            })
        );
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, r#"{"amount":"10.50","currency":"EUR"}"#);
        assert_eq!(serde_json::from_str::<Money>(&json).unwrap(), a);
        assert!(serde_json::from_str::<Currency>(r#""ZZZ""#).is_err());
    }

    proptest! {
        #[test]
        fn round_is_idempotent_and_close(units in -10_000_000_000i64..10_000_000_000i64, scale in 0u32..8, idx in 0usize..CURRENCIES.len()) {
            let cur = Currency::all().nth(idx).unwrap();
            let m = Money::new(Decimal::new(units, scale), cur);
            let r = m.round();
            prop_assert_eq!(r.round(), r);
            prop_assert!(r.is_rounded());
            let half = Decimal::new(5, cur.minor_units() + 1);
            prop_assert!((r.amount - m.amount).abs() <= half);
            // Half away from zero: rounding is symmetric.
            prop_assert_eq!((-m).round(), -r);
        }

        #[test]
        fn parse_round_trips_display(units in -1_000_000_000i64..1_000_000_000i64, scale in 0u32..6) {
            let d = Decimal::new(units, scale);
            prop_assert_eq!(parse_decimal(&d.to_string()), Some(d));
        }
    }
}
