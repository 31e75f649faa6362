//! Exact currency conversion to the configured base currency (DESIGN §6).
//!
//! Amounts are [`Decimal`]s, never floats. Every amount is rounded to its currency's ISO 4217
//! minor unit, half away from zero ([`Money::round`]). A converted amount is computed from the
//! *unrounded* product `amount × rate` and rounded once, in the base currency.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use twocheckout::money::{Currency, Money};

/// Configured conversion rates to the base currency: `1 unit of <currency> = rate × base`.
///
/// In TOML the rates are written as strings so that no float is involved:
/// `[flows.fx.rates]` / `EUR = "1.0850"`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FxTable {
    /// Currency → rate to the base currency. A rate must be positive.
    #[serde(default)]
    pub rates: BTreeMap<Currency, Decimal>,
}

impl FxTable {
    /// The configured rate from `currency` to the base currency, if any (and positive).
    pub fn rate(&self, currency: Currency) -> Option<Decimal> {
        self.rates
            .get(&currency)
            .copied()
            .filter(|r| r.is_sign_positive() && !r.is_zero())
    }

    /// Adds or replaces a rate (builder style, for tests and the CLI).
    pub fn with_rate(mut self, currency: Currency, rate: Decimal) -> FxTable {
        self.rates.insert(currency, rate);
        self
    }
}

/// Where a conversion rate came from, in priority order (best first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FxSource {
    /// The order is already in the base currency (rate 1).
    SameCurrency,
    /// 2Checkout's own `FX_RATE` / `FX_MARKUP`, used when `PAYOUT_CURRENCY` is the base
    /// currency.
    TwoCheckout,
    /// The configured [`FxTable`].
    ConfiguredTable,
}

impl FxSource {
    /// `same_currency`, `two_checkout`, `configured_table`.
    pub fn as_str(self) -> &'static str {
        match self {
            FxSource::SameCurrency => "same_currency",
            FxSource::TwoCheckout => "two_checkout",
            FxSource::ConfiguredTable => "configured_table",
        }
    }
}

/// Number of decimal places kept in a derived rate (a rate is never rounded to a currency's
/// minor unit, only the amounts are).
pub const RATE_DECIMALS: u32 = 12;

/// The effective order-currency → payout-currency rate from 2Checkout's fields.
///
/// ASSUMED (reference §1.2 marks the semantics UNCONFIRMED): `FX_RATE` is the rate at which
/// the merchant is paid, *after* 2Checkout's `FX_MARKUP` percent was taken, so the rate that
/// values the sale itself is `FX_RATE × 100 / (100 − FX_MARKUP)`; this is the formula of
/// 2Checkout's official WHMCS module. A missing markup counts as 0. A markup of 100 % or
/// more, or a non-positive rate, gives no rate.
pub fn two_checkout_rate(fx_rate: Decimal, fx_markup: Option<Decimal>) -> Option<Decimal> {
    if fx_rate <= Decimal::ZERO {
        return None;
    }
    let markup = fx_markup.unwrap_or(Decimal::ZERO);
    let hundred = Decimal::ONE_HUNDRED;
    if markup < Decimal::ZERO || markup >= hundred {
        return None;
    }
    let rate = fx_rate
        .checked_mul(hundred)?
        .checked_div(hundred - markup)?;
    Some(rate.round_dp(RATE_DECIMALS).normalize())
}

/// `amount × rate`, rounded once to the target currency's minor unit. `None` on overflow.
pub fn convert(amount: Decimal, rate: Decimal, to: Currency) -> Option<Decimal> {
    amount
        .checked_mul(rate)
        .map(|a| Money::new(a, to).round().amount)
}

/// Rounds an amount to its currency's minor unit (exactly `minor_units` decimal places).
pub fn round(amount: Decimal, currency: Currency) -> Decimal {
    Money::new(amount, currency).round().amount
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::str::FromStr;

    fn c(code: &str) -> Currency {
        Currency::from_code(code).unwrap()
    }
    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn markup_formula() {
        // 100 / (100 - 4) = 1.041666…
        assert_eq!(
            two_checkout_rate(d("0.2"), Some(d("4"))),
            Some(d("0.208333333333"))
        );
        assert_eq!(two_checkout_rate(d("1.5"), None), Some(d("1.5")));
        assert_eq!(two_checkout_rate(d("0"), None), None);
        assert_eq!(two_checkout_rate(d("1"), Some(d("100"))), None);
        assert_eq!(two_checkout_rate(d("1"), Some(d("-1"))), None);
    }

    #[test]
    fn conversion_rounds_in_the_target_currency() {
        assert_eq!(convert(d("10.00"), d("151.237"), c("JPY")), Some(d("1512")));
        assert_eq!(convert(d("10.005"), d("1"), c("USD")), Some(d("10.01")));
        assert_eq!(
            convert(d("-10.005"), d("1"), c("USD")),
            Some(d("-10.01")),
            "half away from zero is symmetric"
        );
        assert_eq!(convert(d("1.2345"), d("0.377"), c("BHD")), Some(d("0.465")));
        assert_eq!(convert(d("1"), d("1"), c("BHD")).unwrap().scale(), 3);
    }

    #[test]
    fn table_ignores_non_positive_rates() {
        let t = FxTable::default()
            .with_rate(c("EUR"), d("1.08"))
            .with_rate(c("GBP"), d("0"));
        assert_eq!(t.rate(c("EUR")), Some(d("1.08")));
        assert_eq!(t.rate(c("GBP")), None);
        assert_eq!(t.rate(c("JPY")), None);
    }

    #[test]
    fn table_serde_uses_strings() {
        let t: FxTable = toml::from_str("[rates]\nEUR = \"1.0850\"\nJPY = \"0.0067\"\n").unwrap();
        assert_eq!(t.rate(c("EUR")), Some(d("1.0850")));
        assert_eq!(t.rate(c("JPY")), Some(d("0.0067")));
        assert!(toml::from_str::<FxTable>("[rates]\nXXX = \"1\"\n").is_err());
        assert!(toml::from_str::<FxTable>("other = 1\n").is_err());
    }

    fn currency() -> impl Strategy<Value = Currency> {
        prop::sample::select(vec!["USD", "JPY", "BHD", "EUR", "CLF", "KWD", "KRW"]).prop_map(c)
    }

    proptest! {
        #[test]
        fn converted_amounts_have_exactly_the_minor_units(
            units in -1_000_000_000i64..1_000_000_000i64,
            scale in 0u32..5,
            rate_units in 1i64..10_000_000i64,
            rate_scale in 0u32..8,
            to in currency(),
        ) {
            let amount = Decimal::new(units, scale);
            let rate = Decimal::new(rate_units, rate_scale);
            let out = convert(amount, rate, to).unwrap();
            prop_assert_eq!(out.scale(), to.minor_units());
            // Within half a minor unit of the exact product.
            let half = Decimal::new(5, to.minor_units() + 1);
            prop_assert!((out - amount * rate).abs() <= half);
            // Sign is preserved (refunds stay negative).
            prop_assert_eq!(convert(-amount, rate, to).unwrap(), -out);
        }

        #[test]
        fn rounding_is_idempotent(units in -1_000_000_000i64..1_000_000_000i64, scale in 0u32..6, cur in currency()) {
            let r = round(Decimal::new(units, scale), cur);
            prop_assert_eq!(round(r, cur), r);
            prop_assert_eq!(r.scale(), cur.minor_units());
        }
    }
}
