//! Scenario generator: realistic, unsigned IPN / LCN / INS bodies for the business
//! events revsync handles. Deterministic for a given [`GeneratorConfig`] (seeded
//! `StdRng`, simulated clock).
//!
//! Bodies are built in the field order of the published IPN fixtures (as far as the
//! reference describes it). Signature fields, `MESSAGE_ID` and `IPN_DATE` are filled in
//! by the [`crate::Sender`] for every attempt.
//!
//! ASSUMED (not confirmed by the reference): `MESSAGE_TYPE` values other than `AUTH` /
//! `COMPLETE` / `PENDING` (`REFUND`, `REVERSED`, `CHARGEBACK`), `REFUND_TYPE` values
//! `FULL` / `PARTIAL`, `CHARGEBACK_RESOLUTION=OPEN`, the shape of a partial-refund IPN
//! (refunded line negative, other lines `0`), amounts written with the currency's
//! minor units, and the LCN fields `DISPATCH_REASON`, `PRODUCT_CODE`, `PRODUCT_NAME`,
//! `QUANTITY`, `RECURRING_ENABLED`, `NEXT_RENEWAL_PRICE`, `NEXT_RENEWAL_CURRENCY`.

use chrono::{Duration, Months, NaiveDateTime};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use serde::Serialize;
use twocheckout::{Currency, FormBody, Kind, Money};

use crate::catalog::{customer_pool, subscription_products, CustomerProfile, Product, PRODUCTS};

const DATE: &str = "%Y-%m-%d %H:%M:%S";

/// Generator settings.
#[derive(Debug, Clone)]
pub struct GeneratorConfig {
    /// RNG seed.
    pub seed: u64,
    /// Simulated time of the first event.
    pub start: NaiveDateTime,
    /// Merchant code (`VENDOR_CODE`).
    pub merchant_code: String,
    /// Legacy seller id (INS `vendor_id`).
    pub vendor_id: String,
    /// Mark everything as test traffic (`TEST_ORDER=1`, `TEST=1`, INS sale ids `90…`).
    pub test_orders: bool,
    /// Number of distinct customers.
    pub customer_pool_size: usize,
}

impl GeneratorConfig {
    /// Defaults with the given seed; start 2025-01-06 09:00:00.
    pub fn new(seed: u64) -> GeneratorConfig {
        GeneratorConfig {
            seed,
            start: chrono::NaiveDate::from_ymd_opt(2025, 1, 6)
                .and_then(|d| d.and_hms_opt(9, 0, 0))
                .unwrap_or_default(),
            merchant_code: "REVSYNC01".to_owned(),
            vendor_id: "250111206".to_owned(),
            test_orders: false,
            customer_pool_size: 200,
        }
    }
}

/// LCN subscription changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum LcnEvent {
    /// Renewed: new expiration date.
    Renewal,
    /// Expired.
    Expiration,
    /// Renewal payment failed, in grace period.
    PastDue,
    /// Cancelled (disabled) or cancellation scheduled.
    Cancellation,
    /// Moved to a higher plan.
    Upgrade,
    /// Moved to a lower plan or fewer seats.
    Downgrade,
}

/// The business scenarios the generator knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum ScenarioKind {
    /// New order: IPN `PAYMENT_AUTHORIZED` then `COMPLETE`.
    NewOrder,
    /// New order then a full or partial refund (negative amounts).
    Refund,
    /// Authorization then `REVERSED`.
    Reversal,
    /// Completed order then a chargeback IPN.
    Chargeback,
    /// Renewal order (`ORIGINAL_REFNOEXT[]`) plus the LCN with the new expiration.
    Renewal,
    /// Trial sign-up (`IPN_LICENSE_TYPE[]=TRIAL`) plus LCN `LICENSE_TYPE=TRIAL`.
    TrialSignup,
    /// A subscription change notification.
    Lcn(LcnEvent),
    /// Legacy INS recurring installment.
    InsInstallment {
        /// `RECURRING_INSTALLMENT_FAILED` when true, else `…_SUCCESS`.
        failed: bool,
    },
}

/// One notification to deliver.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// IPN, LCN or INS.
    pub kind: Kind,
    /// The scenario it belongs to.
    pub scenario: ScenarioKind,
    /// Sequence number of the scenario in this generator (0-based).
    pub scenario_index: usize,
    /// `REFNO`, `LICENSE_CODE` or `sale_id`.
    pub reference: String,
    /// Simulated time of the event (IPN_DATE of the first attempt).
    pub event_time: NaiveDateTime,
    /// `MESSAGE_ID` of the first attempt (IPN only); resends add the attempt number.
    pub message_id: Option<u64>,
    /// The unsigned body.
    pub form: FormBody,
}

#[derive(Debug, Clone)]
struct LineLicense {
    reference: String,
    trial: bool,
    start: NaiveDateTime,
    expiration: NaiveDateTime,
}

#[derive(Debug, Clone)]
struct Line {
    product: &'static Product,
    qty: i64,
    unit: Money,
    license: Option<LineLicense>,
}

#[derive(Debug, Clone)]
struct Order {
    refno: String,
    refnoext: String,
    original_refnoext: Option<String>,
    orderno: u64,
    customer: usize,
    currency: Currency,
    vat_rate: Decimal,
    usd_rate: Decimal,
    lines: Vec<Line>,
    sale_date: NaiveDateTime,
    card: (&'static str, &'static str, &'static str),
    last_digits: String,
}

/// A live subscription the generator can send LCNs / renewals for.
#[derive(Debug, Clone)]
struct Subscription {
    license: String,
    customer: usize,
    product: &'static Product,
    qty: i64,
    currency: Currency,
    usd_rate: Decimal,
    vat_rate: Decimal,
    expiration: NaiveDateTime,
    original_refnoext: String,
    trial: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Amounts {
    Positive,
    Negative,
    /// Only the first line, negated; other lines zero.
    NegativeFirstLine,
}

struct IpnOptions<'a> {
    status: &'a str,
    message_type: &'a str,
    amounts: Amounts,
    fraud_status: &'a str,
    refund_type: &'a str,
    chargeback: Option<(&'a str, &'a str)>,
    paid: bool,
    complete: bool,
}

const CARDS: &[(&str, &str, &str)] = &[
    ("Visa/MasterCard", "CCVISAMC", "visa"),
    ("Visa/MasterCard", "CCVISAMC", "mastercard"),
    ("American Express", "AMEX", "amex"),
    ("PayPal", "PAYPAL", ""),
];

const CHARGEBACK_REASONS: &[&str] = &[
    "MERCHANDISE_NOT_RECEIVED",
    "DUPLICATE_TRANSACTION",
    "FRAUD",
    "CREDIT_NOT_PROCESSED",
    "NOT_RECOGNIZED",
    "CANCELED_RECURRING",
    "NOT_AS_DESCRIBED",
];

fn fmt_money(m: Money) -> String {
    m.round().amount.to_string()
}

fn fmt4(d: Decimal) -> String {
    let mut d = d.round_dp(4);
    d.rescale(4);
    d.to_string()
}

fn add_months(t: NaiveDateTime, months: u32) -> NaiveDateTime {
    t.checked_add_months(Months::new(months)).unwrap_or(t)
}

/// The deterministic traffic generator.
#[derive(Debug)]
pub struct Generator {
    cfg: GeneratorConfig,
    rng: StdRng,
    now: NaiveDateTime,
    customers: Vec<CustomerProfile>,
    subscriptions: Vec<Subscription>,
    next_refno: u64,
    next_orderno: u64,
    next_message_id: u64,
    next_ins_message_id: u64,
    next_sale_id: u64,
    next_invoice_id: u64,
    scenarios: usize,
}

impl Generator {
    /// A generator; the same config always yields the same traffic.
    pub fn new(cfg: GeneratorConfig) -> Generator {
        let mut rng = StdRng::seed_from_u64(cfg.seed);
        let customers = customer_pool(&mut rng, cfg.customer_pool_size);
        let next_refno = 230_000_000 + rng.gen_range(0..1_000_000) * 10;
        let next_sale_id = if cfg.test_orders {
            9_093_700_000
        } else {
            4_774_300_000
        } + rng.gen_range(0..10_000) * 100;
        Generator {
            now: cfg.start,
            next_refno,
            next_orderno: 1000 + rng.gen_range(0..1000),
            next_message_id: 254_000_000_000 + rng.gen_range(0..1_000_000) * 1000,
            next_ins_message_id: 4000 + rng.gen_range(0..1000),
            next_sale_id,
            next_invoice_id: next_sale_id + 9,
            cfg,
            rng,
            customers,
            subscriptions: Vec::new(),
            scenarios: 0,
        }
    }

    /// The simulated clock.
    pub fn now(&self) -> NaiveDateTime {
        self.now
    }

    /// A random scenario kind with a realistic mix.
    pub fn random_kind(&mut self) -> ScenarioKind {
        let r = self.rng.gen_range(0..100);
        match r {
            0..=34 => ScenarioKind::NewOrder,
            35..=42 => ScenarioKind::Refund,
            43..=46 => ScenarioKind::Reversal,
            47..=49 => ScenarioKind::Chargeback,
            50..=61 => ScenarioKind::Renewal,
            62..=71 => ScenarioKind::TrialSignup,
            72..=94 => ScenarioKind::Lcn(
                *[
                    LcnEvent::Renewal,
                    LcnEvent::Expiration,
                    LcnEvent::PastDue,
                    LcnEvent::Cancellation,
                    LcnEvent::Upgrade,
                    LcnEvent::Downgrade,
                ]
                .choose(&mut self.rng)
                .unwrap_or(&LcnEvent::Renewal),
            ),
            _ => ScenarioKind::InsInstallment {
                failed: self.rng.gen_bool(0.6),
            },
        }
    }

    /// `count` random scenarios, flattened to deliveries in event order.
    pub fn generate(&mut self, count: usize) -> Vec<Delivery> {
        let mut out = Vec::new();
        for _ in 0..count {
            let kind = self.random_kind();
            out.extend(self.scenario(kind));
        }
        out
    }

    /// The deliveries of one scenario, in the order 2Checkout would send them.
    pub fn scenario(&mut self, kind: ScenarioKind) -> Vec<Delivery> {
        let index = self.scenarios;
        self.scenarios += 1;
        self.advance(1, 240);
        let mut out = Vec::new();
        match kind {
            ScenarioKind::NewOrder => {
                let order = self.new_order(false, None);
                self.authorized_then_complete(&order, kind, &mut out);
            }
            ScenarioKind::Refund => {
                let order = self.new_order(false, None);
                self.authorized_then_complete(&order, kind, &mut out);
                self.advance(60, 60 * 24 * 10);
                let partial = order.lines.len() > 1 && self.rng.gen_bool(0.5);
                let (amounts, refund_type) = if partial {
                    (Amounts::NegativeFirstLine, "PARTIAL")
                } else {
                    (Amounts::Negative, "FULL")
                };
                out.push(self.ipn(
                    &order,
                    kind,
                    IpnOptions {
                        status: "REFUND",
                        message_type: "REFUND",
                        amounts,
                        fraud_status: "APPROVED",
                        refund_type,
                        chargeback: None,
                        paid: true,
                        complete: true,
                    },
                ));
            }
            ScenarioKind::Reversal => {
                let order = self.new_order(false, None);
                out.push(self.ipn(
                    &order,
                    kind,
                    IpnOptions {
                        status: "PAYMENT_AUTHORIZED",
                        message_type: "AUTH",
                        amounts: Amounts::Positive,
                        fraud_status: "PENDING",
                        refund_type: "",
                        chargeback: None,
                        paid: true,
                        complete: false,
                    },
                ));
                self.advance(5, 600);
                out.push(self.ipn(
                    &order,
                    kind,
                    IpnOptions {
                        status: "REVERSED",
                        message_type: "REVERSED",
                        amounts: Amounts::Negative,
                        fraud_status: "DENIED",
                        refund_type: "",
                        chargeback: None,
                        paid: true,
                        complete: false,
                    },
                ));
            }
            ScenarioKind::Chargeback => {
                let order = self.new_order(false, None);
                self.authorized_then_complete(&order, kind, &mut out);
                self.advance(60 * 24, 60 * 24 * 30);
                let reason = *CHARGEBACK_REASONS.choose(&mut self.rng).unwrap_or(&"FRAUD");
                out.push(self.ipn(
                    &order,
                    kind,
                    IpnOptions {
                        status: "COMPLETE",
                        message_type: "CHARGEBACK",
                        amounts: Amounts::Positive,
                        fraud_status: "APPROVED",
                        refund_type: "",
                        chargeback: Some(("OPEN", reason)),
                        paid: true,
                        complete: true,
                    },
                ));
            }
            ScenarioKind::Renewal => {
                let sub = self.pick_subscription(&mut out);
                self.advance(60, 60 * 24);
                let order = self.renewal_order(&sub, false);
                self.authorized_then_complete(&order, kind, &mut out);
                self.renew(&sub.license, &order);
                let updated = self.subscription(&sub.license).clone();
                out.push(self.lcn(&updated, kind, LcnEvent::Renewal));
            }
            ScenarioKind::TrialSignup => {
                let order = self.new_order(true, None);
                self.authorized_then_complete(&order, kind, &mut out);
                let license = order.lines[0].license.as_ref().map(|l| l.reference.clone());
                if let Some(license) = license {
                    let sub = self.subscription(&license).clone();
                    out.push(self.lcn(&sub, kind, LcnEvent::Renewal));
                    // Half of the trials convert: a paid renewal-like order.
                    if self.rng.gen_bool(0.5) {
                        self.advance(60 * 24 * 7, 60 * 24 * 14);
                        let paid = self.renewal_order(&sub, true);
                        self.authorized_then_complete(&paid, kind, &mut out);
                        self.renew(&license, &paid);
                    }
                }
            }
            ScenarioKind::Lcn(event) => {
                let sub = self.pick_subscription(&mut out);
                self.advance(60, 60 * 24 * 3);
                let sub = self.apply_lcn_event(&sub, event);
                out.push(self.lcn(&sub, kind, event));
            }
            ScenarioKind::InsInstallment { failed } => {
                out.push(self.ins(kind, failed));
            }
        }
        for d in &mut out {
            d.scenario_index = index;
        }
        out
    }

    fn advance(&mut self, min_minutes: i64, max_minutes: i64) {
        let m = self.rng.gen_range(min_minutes..=max_minutes);
        self.now += Duration::minutes(m) + Duration::seconds(self.rng.gen_range(0..60));
    }

    fn subscription(&self, license: &str) -> &Subscription {
        self.subscriptions
            .iter()
            .find(|s| s.license == license)
            .unwrap_or_else(|| unreachable!("subscription {license} was registered"))
    }

    fn authorized_then_complete(
        &mut self,
        order: &Order,
        kind: ScenarioKind,
        out: &mut Vec<Delivery>,
    ) {
        out.push(self.ipn(
            order,
            kind,
            IpnOptions {
                status: "PAYMENT_AUTHORIZED",
                message_type: "AUTH",
                amounts: Amounts::Positive,
                fraud_status: "PENDING",
                refund_type: "",
                chargeback: None,
                paid: true,
                complete: false,
            },
        ));
        self.advance(1, 30);
        out.push(self.ipn(
            order,
            kind,
            IpnOptions {
                status: "COMPLETE",
                message_type: "COMPLETE",
                amounts: Amounts::Positive,
                fraud_status: "APPROVED",
                refund_type: "",
                chargeback: None,
                paid: true,
                complete: true,
            },
        ));
    }

    /// An existing subscription, or a new order that creates one (its IPNs are added
    /// to `out`).
    fn pick_subscription(&mut self, out: &mut Vec<Delivery>) -> Subscription {
        let live: Vec<usize> = (0..self.subscriptions.len()).collect();
        if !live.is_empty() && self.rng.gen_bool(0.7) {
            let i = *live.choose(&mut self.rng).unwrap_or(&0);
            return self.subscriptions[i].clone();
        }
        let product = *subscription_products()
            .collect::<Vec<_>>()
            .choose(&mut self.rng)
            .unwrap_or(&&PRODUCTS[0]);
        let order = self.new_order(false, Some(product));
        self.authorized_then_complete(&order, ScenarioKind::NewOrder, out);
        let license = order.lines[0]
            .license
            .as_ref()
            .map(|l| l.reference.clone())
            .unwrap_or_default();
        self.subscription(&license).clone()
    }

    fn alloc_refno(&mut self) -> String {
        self.next_refno += self.rng.gen_range(1..50);
        self.next_refno.to_string()
    }

    fn license_code(&mut self) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        (0..10)
            .map(|_| ALPHABET[self.rng.gen_range(0..ALPHABET.len())] as char)
            .collect()
    }

    fn price(&self, product: &Product, usd_rate: Decimal, currency: Currency) -> Money {
        Money::new(product.usd_price() / usd_rate, currency).round()
    }

    fn new_order(&mut self, trial: bool, product: Option<&'static Product>) -> Order {
        let customer = self.rng.gen_range(0..self.customers.len());
        let country = self.customers[customer].country();
        let currency = Currency::from_code(country.currency)
            .unwrap_or_else(|_| unreachable!("catalogue currencies are valid"));
        let usd_rate = country.usd_rate();
        let subs: Vec<&'static Product> = subscription_products().collect();
        let first = product.unwrap_or_else(|| *subs.choose(&mut self.rng).unwrap_or(&&PRODUCTS[0]));
        let mut products = vec![first];
        if !trial && self.rng.gen_bool(0.35) {
            let extra: &'static Product = PRODUCTS.choose(&mut self.rng).unwrap_or(&PRODUCTS[5]);
            if extra.id != first.id {
                products.push(extra);
            }
        }
        let sale_date = self.now;
        let lines = products
            .into_iter()
            .map(|p| {
                let qty = if p.tier == 3 {
                    self.rng.gen_range(1..4)
                } else {
                    1
                };
                let unit = if trial {
                    Money::new(Decimal::ONE / usd_rate, currency).round()
                } else {
                    self.price(p, usd_rate, currency)
                };
                let license = p.period_months.map(|months| {
                    let expiration = if trial {
                        sale_date + Duration::days(14)
                    } else {
                        add_months(sale_date, months)
                    };
                    LineLicense {
                        reference: self.license_code(),
                        trial,
                        start: sale_date,
                        expiration,
                    }
                });
                Line {
                    product: p,
                    qty,
                    unit,
                    license,
                }
            })
            .collect::<Vec<_>>();
        let refno = self.alloc_refno();
        let order = Order {
            refnoext: format!("WEB-{refno}"),
            refno,
            original_refnoext: None,
            orderno: {
                self.next_orderno += 1;
                self.next_orderno
            },
            customer,
            currency,
            vat_rate: country.vat_rate(),
            usd_rate,
            lines,
            sale_date,
            card: *CARDS.choose(&mut self.rng).unwrap_or(&CARDS[0]),
            last_digits: format!("{:04}", self.rng.gen_range(0..10_000)),
        };
        for line in &order.lines {
            if let Some(l) = &line.license {
                self.subscriptions.push(Subscription {
                    license: l.reference.clone(),
                    customer,
                    product: line.product,
                    qty: line.qty,
                    currency,
                    usd_rate,
                    vat_rate: order.vat_rate,
                    expiration: l.expiration,
                    original_refnoext: order.refnoext.clone(),
                    trial,
                });
            }
        }
        order
    }

    fn renewal_order(&mut self, sub: &Subscription, from_trial: bool) -> Order {
        let refno = self.alloc_refno();
        let months = sub.product.period_months.unwrap_or(1);
        let start = if from_trial { self.now } else { sub.expiration };
        Order {
            refnoext: format!("REN-{refno}"),
            refno,
            original_refnoext: Some(sub.original_refnoext.clone()),
            orderno: {
                self.next_orderno += 1;
                self.next_orderno
            },
            customer: sub.customer,
            currency: sub.currency,
            vat_rate: sub.vat_rate,
            usd_rate: sub.usd_rate,
            lines: vec![Line {
                product: sub.product,
                qty: sub.qty,
                unit: self.price(sub.product, sub.usd_rate, sub.currency),
                license: Some(LineLicense {
                    reference: sub.license.clone(),
                    trial: false,
                    start,
                    expiration: add_months(start, months),
                }),
            }],
            sale_date: self.now,
            card: *CARDS.choose(&mut self.rng).unwrap_or(&CARDS[0]),
            last_digits: format!("{:04}", self.rng.gen_range(0..10_000)),
        }
    }

    fn renew(&mut self, license: &str, order: &Order) {
        let exp = order.lines[0].license.as_ref().map(|l| l.expiration);
        if let Some(s) = self.subscriptions.iter_mut().find(|s| s.license == license) {
            if let Some(exp) = exp {
                s.expiration = exp;
            }
            s.trial = false;
        }
    }

    fn apply_lcn_event(&mut self, sub: &Subscription, event: LcnEvent) -> Subscription {
        let mut s = sub.clone();
        match event {
            LcnEvent::Renewal => {
                s.expiration = add_months(s.expiration, s.product.period_months.unwrap_or(1));
                s.trial = false;
            }
            LcnEvent::Upgrade | LcnEvent::Downgrade => {
                let up = event == LcnEvent::Upgrade;
                let candidates: Vec<&'static Product> = subscription_products()
                    .filter(|p| {
                        p.tier > 0
                            && if up {
                                p.tier > s.product.tier
                            } else {
                                p.tier < s.product.tier && p.tier > 0
                            }
                    })
                    .collect();
                match candidates.choose(&mut self.rng) {
                    Some(p) => s.product = p,
                    // Already at the top/bottom plan: change seats instead.
                    None if up => s.qty += 1,
                    None => s.qty = (s.qty - 1).max(1),
                }
            }
            LcnEvent::Expiration | LcnEvent::PastDue | LcnEvent::Cancellation => {}
        }
        if let Some(stored) = self
            .subscriptions
            .iter_mut()
            .find(|x| x.license == s.license)
        {
            *stored = s.clone();
        }
        s
    }

    fn ipn(&mut self, order: &Order, scenario: ScenarioKind, o: IpnOptions<'_>) -> Delivery {
        let c = self.customers[order.customer].clone();
        let country = c.country();
        let cur = order.currency;
        let sign = |i: usize, m: Money| -> Money {
            match o.amounts {
                Amounts::Positive => m,
                Amounts::Negative => -m,
                Amounts::NegativeFirstLine if i == 0 => -m,
                Amounts::NegativeFirstLine => Money::zero(m.currency),
            }
        };
        let mut f = FormBody::new();
        let s = |f: &mut FormBody, k: &str, v: &str| f.push_scalar(k, v);
        let date = |t: NaiveDateTime| t.format(DATE).to_string();
        s(&mut f, "GIFT_ORDER", "0");
        s(&mut f, "SALEDATE", &date(order.sale_date));
        s(
            &mut f,
            "PAYMENTDATE",
            &if o.paid {
                date(order.sale_date + Duration::seconds(72))
            } else {
                "0000-00-00 00:00:00".into()
            },
        );
        s(&mut f, "REFNO", &order.refno);
        s(&mut f, "REFNOEXT", &order.refnoext);
        f.push_array(
            "ORIGINAL_REFNOEXT",
            &[order.original_refnoext.as_deref().unwrap_or("")],
        );
        s(&mut f, "SHOPPER_REFERENCE_NUMBER", "");
        s(&mut f, "ORDERNO", &order.orderno.to_string());
        s(&mut f, "ORDERSTATUS", o.status);
        s(&mut f, "PAYMETHOD", order.card.0);
        s(&mut f, "PAYMETHOD_CODE", order.card.1);
        s(&mut f, "FIRSTNAME", &c.first_name);
        s(&mut f, "LASTNAME", &c.last_name);
        s(&mut f, "COMPANY", c.company.as_deref().unwrap_or(""));
        s(&mut f, "REGISTRATIONNUMBER", "");
        s(&mut f, "FISCALCODE", "");
        s(&mut f, "CBANKNAME", "");
        s(&mut f, "CBANKACCOUNT", "");
        s(&mut f, "ADDRESS1", &c.street);
        s(&mut f, "ADDRESS2", "");
        s(&mut f, "CITY", country.city);
        s(&mut f, "STATE", country.state);
        s(&mut f, "ZIPCODE", country.zip);
        s(&mut f, "COUNTRY", country.name);
        s(&mut f, "COUNTRY_CODE", &country.code.to_ascii_lowercase());
        s(&mut f, "PHONE", &c.phone);
        s(&mut f, "FAX", "");
        s(&mut f, "CUSTOMEREMAIL", &c.email);
        s(&mut f, "FIRSTNAME_D", &c.first_name);
        s(&mut f, "LASTNAME_D", &c.last_name);
        s(&mut f, "COMPANY_D", c.company.as_deref().unwrap_or(""));
        s(&mut f, "ADDRESS1_D", &c.street);
        s(&mut f, "ADDRESS2_D", "");
        s(&mut f, "CITY_D", country.city);
        s(&mut f, "STATE_D", country.state);
        s(&mut f, "ZIPCODE_D", country.zip);
        s(&mut f, "COUNTRY_D", country.name);
        s(&mut f, "COUNTRY_D_CODE", &country.code.to_ascii_lowercase());
        s(&mut f, "PHONE_D", &c.phone);
        s(&mut f, "EMAIL_D", &c.email);
        s(&mut f, "IPADDRESS", &c.ip);
        s(&mut f, "IPCOUNTRY", country.name);
        s(
            &mut f,
            "COMPLETE_DATE",
            &if o.complete {
                date(order.sale_date + Duration::seconds(95))
            } else {
                "0000-00-00 00:00:00".into()
            },
        );
        s(&mut f, "TIMEZONE_OFFSET", "GMT+00:00");
        s(&mut f, "CURRENCY", cur.code());
        s(&mut f, "LANGUAGE", "en");
        s(&mut f, "ORDERFLOW", "REGULAR");

        let mut totals = Vec::new();
        let mut vats = Vec::new();
        let mut general = Money::zero(cur);
        for (i, line) in order.lines.iter().enumerate() {
            let net = Money::new(line.unit.amount * Decimal::from(line.qty), cur).round();
            let vat = Money::new(net.amount * order.vat_rate / Decimal::ONE_HUNDRED, cur).round();
            let total = sign(i, Money::new(net.amount + vat.amount, cur));
            general = Money::new(general.amount + total.amount, cur);
            totals.push(fmt_money(total));
            vats.push(fmt_money(sign(i, vat)));
        }
        let col =
            |g: &dyn Fn(&Line) -> String| -> Vec<String> { order.lines.iter().map(g).collect() };
        let push = |f: &mut FormBody, k: &str, v: Vec<String>| {
            let refs: Vec<&str> = v.iter().map(String::as_str).collect();
            f.push_array(k, &refs);
        };
        push(&mut f, "IPN_PID", col(&|l| l.product.id.to_owned()));
        push(&mut f, "IPN_PNAME", col(&|l| l.product.name.to_owned()));
        push(&mut f, "IPN_PCODE", col(&|l| l.product.code.to_owned()));
        push(&mut f, "IPN_EXTERNAL_REFERENCE", col(&|_| String::new()));
        push(&mut f, "IPN_INFO", col(&|_| String::new()));
        push(&mut f, "IPN_QTY", col(&|l| l.qty.to_string()));
        push(&mut f, "IPN_PRICE", col(&|l| fmt_money(l.unit)));
        push(&mut f, "IPN_VAT", vats);
        push(&mut f, "IPN_VAT_RATE", col(&|_| fmt4(order.vat_rate)));
        push(&mut f, "IPN_VER", col(&|_| "1".to_owned()));
        push(
            &mut f,
            "IPN_DISCOUNT",
            col(&|_| fmt_money(Money::zero(cur))),
        );
        push(&mut f, "IPN_PROMOTION_CATEGORY", col(&|_| String::new()));
        push(&mut f, "IPN_PROMONAME", col(&|_| String::new()));
        push(&mut f, "IPN_PROMOCODE", col(&|_| String::new()));
        push(&mut f, "IPN_ORDER_COSTS", col(&|_| "0".to_owned()));
        push(
            &mut f,
            "IPN_SKU",
            col(&|l| format!("SKU-{}", l.product.code)),
        );
        s(&mut f, "IPN_PARTNER_CODE", "");
        push(&mut f, "IPN_PGROUP", col(&|_| "0".to_owned()));
        push(&mut f, "IPN_PGROUP_NAME", col(&|_| String::new()));
        s(&mut f, "MESSAGE_ID", "");
        s(&mut f, "MESSAGE_TYPE", o.message_type);
        let lic = |g: &dyn Fn(&LineLicense) -> String| -> Vec<String> {
            order
                .lines
                .iter()
                .map(|l| l.license.as_ref().map(g).unwrap_or_default())
                .collect()
        };
        let licensed = order.lines.iter().any(|l| l.license.is_some());
        if licensed {
            push(
                &mut f,
                "IPN_LICENSE_PROD",
                order
                    .lines
                    .iter()
                    .map(|l| {
                        if l.license.is_some() {
                            l.product.id.to_owned()
                        } else {
                            String::new()
                        }
                    })
                    .collect(),
            );
            push(
                &mut f,
                "IPN_LICENSE_TYPE",
                lic(&|l| {
                    if l.trial {
                        "TRIAL".into()
                    } else {
                        "REGULAR".into()
                    }
                }),
            );
            push(&mut f, "IPN_LICENSE_REF", lic(&|l| l.reference.clone()));
            push(&mut f, "IPN_LICENSE_EXP", lic(&|l| date(l.expiration)));
            push(&mut f, "IPN_LICENSE_START", lic(&|l| date(l.start)));
            push(&mut f, "IPN_LICENSE_LIFETIME", lic(&|_| "NO".into()));
            push(
                &mut f,
                "IPN_LICENSE_ADDITIONAL_INFO",
                lic(&|_| String::new()),
            );
        }
        push(&mut f, "IPN_DELIVEREDCODES", col(&|_| String::new()));
        s(&mut f, "IPN_DOWNLOAD_LINK", "");
        push(&mut f, "IPN_TOTAL", totals);
        s(&mut f, "IPN_TOTALGENERAL", &fmt_money(general));
        s(&mut f, "IPN_SHIPPING", &fmt_money(Money::zero(cur)));
        s(&mut f, "IPN_SHIPPING_TAX", &fmt_money(Money::zero(cur)));
        s(
            &mut f,
            "AVANGATE_CUSTOMER_REFERENCE",
            c.avangate_reference.as_deref().unwrap_or(""),
        );
        s(
            &mut f,
            "EXTERNAL_CUSTOMER_REFERENCE",
            c.external_reference.as_deref().unwrap_or(""),
        );
        s(&mut f, "IPN_PARTNER_MARGIN_PERCENT", "0.00");
        s(&mut f, "IPN_PARTNER_MARGIN", "0.00");
        s(&mut f, "IPN_EXTRA_MARGIN", "0.00");
        s(&mut f, "IPN_EXTRA_DISCOUNT", "0.00");
        s(&mut f, "IPN_COUPON_DISCOUNT", "0.00");
        s(&mut f, "IPN_LINK_SOURCE", "");
        push(&mut f, "IPN_ORIGINAL_LINK_SOURCE", col(&|_| String::new()));
        // 5 % + 0.50 USD (in the order currency), with the sign of the total.
        let fixed = Decimal::new(50, 2) / order.usd_rate;
        let commission = general.amount * Decimal::new(5, 2)
            + if general.amount.is_zero() {
                Decimal::ZERO
            } else if general.amount.is_sign_negative() {
                -fixed
            } else {
                fixed
            };
        s(&mut f, "IPN_COMMISSION", &fmt4(commission));
        s(&mut f, "REFUND_TYPE", o.refund_type);
        s(
            &mut f,
            "CHARGEBACK_RESOLUTION",
            o.chargeback.map_or("NONE", |c| c.0),
        );
        s(
            &mut f,
            "CHARGEBACK_REASON_CODE",
            o.chargeback.map_or("", |c| c.1),
        );
        s(
            &mut f,
            "TEST_ORDER",
            if self.cfg.test_orders { "1" } else { "0" },
        );
        s(&mut f, "IPN_ORDER_ORIGIN", "Web");
        s(&mut f, "FRAUD_STATUS", o.fraud_status);
        s(&mut f, "CARD_TYPE", order.card.2);
        s(
            &mut f,
            "CARD_LAST_DIGITS",
            if order.card.2.is_empty() {
                ""
            } else {
                &order.last_digits
            },
        );
        s(
            &mut f,
            "CARD_EXPIRATION_DATE",
            if order.card.2.is_empty() { "" } else { "09/28" },
        );
        s(&mut f, "GATEWAY_RESPONSE", "Approved");
        s(&mut f, "IPN_DATE", "");
        let usd = Currency::from_code("USD").unwrap_or_else(|_| unreachable!("USD exists"));
        let markup = if cur == usd {
            Decimal::ZERO
        } else {
            Decimal::new(4, 0)
        };
        let payable =
            (general.amount - commission) * order.usd_rate * (Decimal::ONE_HUNDRED - markup)
                / Decimal::ONE_HUNDRED;
        s(&mut f, "FX_RATE", &order.usd_rate.normalize().to_string());
        s(&mut f, "FX_MARKUP", &markup.to_string());
        s(
            &mut f,
            "PAYABLE_AMOUNT",
            &fmt_money(Money::new(payable, usd)),
        );
        s(&mut f, "PAYOUT_CURRENCY", "USD");
        s(&mut f, "VENDOR_CODE", &self.cfg.merchant_code);
        s(&mut f, "PROPOSAL_ID", "");

        self.next_message_id += 1000;
        Delivery {
            kind: Kind::Ipn,
            scenario,
            scenario_index: 0,
            reference: order.refno.clone(),
            event_time: self.now,
            message_id: Some(self.next_message_id),
            form: f,
        }
    }

    fn lcn(&mut self, sub: &Subscription, scenario: ScenarioKind, event: LcnEvent) -> Delivery {
        let c = self.customers[sub.customer].clone();
        let country = c.country();
        let date = |t: NaiveDateTime| t.format(DATE).to_string();
        let (status, reason, disabled, recurring, changed_by) = match event {
            LcnEvent::Renewal => ("ACTIVE", "LICENCE_CHANGE", "0", "1", "SYSTEM"),
            LcnEvent::Expiration => ("EXPIRED", "LICENCE_EXPIRATION", "1", "0", "SYSTEM"),
            LcnEvent::PastDue => ("PAST DUE", "LICENCE_PASTDUE", "0", "1", "SYSTEM"),
            LcnEvent::Cancellation => {
                if self.rng.gen_bool(0.5) {
                    ("DISABLED", "LICENCE_CHANGE", "1", "0", "CUSTOMER")
                } else {
                    (
                        "ACTIVE",
                        "SCHEDULED_FOR_CANCELATION_ON_DEMAND",
                        "0",
                        "0",
                        "VENDOR",
                    )
                }
            }
            LcnEvent::Upgrade | LcnEvent::Downgrade => {
                ("ACTIVE", "LICENCE_CHANGE", "0", "1", "CUSTOMER")
            }
        };
        let price = Money::new(
            self.price(sub.product, sub.usd_rate, sub.currency).amount * Decimal::from(sub.qty),
            sub.currency,
        );
        let mut f = FormBody::new();
        let s = |f: &mut FormBody, k: &str, v: &str| f.push_scalar(k, v);
        s(&mut f, "LICENSE_CODE", &sub.license);
        s(&mut f, "FIRST_NAME", &c.first_name);
        s(&mut f, "LAST_NAME", &c.last_name);
        s(&mut f, "COMPANY", c.company.as_deref().unwrap_or(""));
        s(&mut f, "EMAIL", &c.email);
        s(&mut f, "PHONE", &c.phone);
        s(&mut f, "FAX", "");
        s(&mut f, "COUNTRY", country.code);
        s(&mut f, "STATE", country.state);
        s(&mut f, "CITY", country.city);
        s(&mut f, "ZIP", country.zip);
        s(&mut f, "ADDRESS", &c.street);
        s(&mut f, "EXPIRATION_DATE", &date(sub.expiration));
        s(&mut f, "DATE_UPDATED", &date(self.now));
        s(
            &mut f,
            "AVANGATE_CUSTOMER_REFERENCE",
            c.avangate_reference.as_deref().unwrap_or(""),
        );
        s(
            &mut f,
            "EXTERNAL_CUSTOMER_REFERENCE",
            c.external_reference.as_deref().unwrap_or(""),
        );
        s(&mut f, "TEST", if self.cfg.test_orders { "1" } else { "0" });
        s(&mut f, "CHANGED_BY", changed_by);
        s(
            &mut f,
            "LICENSE_TYPE",
            if sub.trial { "TRIAL" } else { "REGULAR" },
        );
        s(&mut f, "DISABLED", disabled);
        s(&mut f, "STATUS", status);
        // ASSUMED field names below (reference §3.1: rest of the table unreadable).
        s(&mut f, "DISPATCH_REASON", reason);
        s(&mut f, "PRODUCT_CODE", sub.product.code);
        s(&mut f, "PRODUCT_NAME", sub.product.name);
        s(&mut f, "QUANTITY", &sub.qty.to_string());
        s(&mut f, "RECURRING_ENABLED", recurring);
        s(&mut f, "NEXT_RENEWAL_PRICE", &fmt_money(price));
        s(&mut f, "NEXT_RENEWAL_CURRENCY", sub.currency.code());
        Delivery {
            kind: Kind::Lcn,
            scenario,
            scenario_index: 0,
            reference: sub.license.clone(),
            event_time: self.now,
            message_id: None,
            form: f,
        }
    }

    fn ins(&mut self, scenario: ScenarioKind, failed: bool) -> Delivery {
        let customer = self.rng.gen_range(0..self.customers.len());
        let c = self.customers[customer].clone();
        let country = c.country();
        let usd = Currency::from_code("USD").unwrap_or_else(|_| unreachable!("USD exists"));
        let cust_currency = Currency::from_code(country.currency).unwrap_or(usd);
        let product = *subscription_products()
            .collect::<Vec<_>>()
            .choose(&mut self.rng)
            .unwrap_or(&&PRODUCTS[0]);
        let list = Money::new(product.usd_price(), usd).round();
        let cust = self.price(product, country.usd_rate(), cust_currency);
        self.next_sale_id += self.rng.gen_range(10..500);
        self.next_invoice_id = self.next_sale_id + self.rng.gen_range(1..9);
        self.next_ins_message_id += 1;
        let installments = self.rng.gen_range(1..24u32);
        let next = add_months(self.now, product.period_months.unwrap_or(1));
        let (message_type, description, rec_status, invoice_status) = if failed {
            (
                "RECURRING_INSTALLMENT_FAILED",
                "Recurring installment failed",
                "fail",
                "declined",
            )
        } else {
            (
                "RECURRING_INSTALLMENT_SUCCESS",
                "Recurring installment successfully billed",
                "live",
                "deposited",
            )
        };
        let mut f = FormBody::new();
        let s = |f: &mut FormBody, k: &str, v: &str| f.push_scalar(k, v);
        s(&mut f, "message_type", message_type);
        s(&mut f, "message_description", description);
        s(
            &mut f,
            "timestamp",
            &format!("{} EST", self.now.format(DATE)),
        );
        s(&mut f, "md5_hash", "");
        s(&mut f, "message_id", &self.next_ins_message_id.to_string());
        s(&mut f, "key_count", "");
        s(&mut f, "vendor_id", &self.cfg.vendor_id);
        s(&mut f, "sale_id", &self.next_sale_id.to_string());
        s(
            &mut f,
            "sale_date_placed",
            &(self.now - Duration::days(30 * i64::from(installments)))
                .format(DATE)
                .to_string(),
        );
        s(
            &mut f,
            "vendor_order_id",
            &format!("WEB-{}", self.next_sale_id),
        );
        s(&mut f, "invoice_id", &self.next_invoice_id.to_string());
        s(&mut f, "recurring", "1");
        s(&mut f, "payment_type", "credit card");
        s(&mut f, "list_currency", "USD");
        s(&mut f, "cust_currency", cust_currency.code());
        s(
            &mut f,
            "auth_exp",
            &(self.now + Duration::days(7))
                .format("%Y-%m-%d")
                .to_string(),
        );
        s(&mut f, "invoice_status", invoice_status);
        s(&mut f, "fraud_status", "pass");
        s(&mut f, "invoice_list_amount", &fmt_money(list));
        s(&mut f, "invoice_usd_amount", &fmt_money(list));
        s(&mut f, "invoice_cust_amount", &fmt_money(cust));
        s(&mut f, "customer_first_name", &c.first_name);
        s(&mut f, "customer_last_name", &c.last_name);
        s(
            &mut f,
            "customer_name",
            &format!("{} {}", c.first_name, c.last_name),
        );
        s(&mut f, "customer_email", &c.email);
        s(&mut f, "customer_phone", &c.phone);
        s(&mut f, "customer_ip", &c.ip);
        s(&mut f, "customer_ip_country", country.name);
        s(&mut f, "bill_street_address", &c.street);
        s(&mut f, "bill_street_address2", "");
        s(&mut f, "bill_city", country.city);
        s(&mut f, "bill_state", country.state);
        s(&mut f, "bill_postal_code", country.zip);
        s(&mut f, "bill_country", country.code);
        s(&mut f, "item_count", "1");
        s(&mut f, "item_name_1", product.name);
        s(&mut f, "item_id_1", product.code);
        s(&mut f, "item_list_amount_1", &fmt_money(list));
        s(&mut f, "item_usd_amount_1", &fmt_money(list));
        s(&mut f, "item_cust_amount_1", &fmt_money(cust));
        s(&mut f, "item_type_1", "bill");
        s(&mut f, "item_duration_1", "Forever");
        s(
            &mut f,
            "item_recurrence_1",
            &format!("{} Month", product.period_months.unwrap_or(1)),
        );
        s(&mut f, "item_rec_list_amount_1", &fmt_money(list));
        s(&mut f, "item_rec_status_1", rec_status);
        s(
            &mut f,
            "item_rec_date_next_1",
            &next.format("%Y-%m-%d").to_string(),
        );
        s(
            &mut f,
            "item_rec_install_billed_1",
            &(installments + u32::from(!failed)).to_string(),
        );
        let key_count = f.len().to_string();
        f.push_scalar("key_count", &key_count);
        Delivery {
            kind: Kind::Ins,
            scenario,
            scenario_index: 0,
            reference: self.next_sale_id.to_string(),
            event_time: self.now,
            message_id: None,
            form: f,
        }
    }
}
