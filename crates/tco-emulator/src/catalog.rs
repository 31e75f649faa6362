//! Static data for realistic traffic: products, countries (currency, VAT, addresses)
//! and the customer pool (non-ASCII names, free-mail and company domains).

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;
use rust_decimal::Decimal;

/// A product of the emulated merchant's catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Product {
    /// 2Checkout product id (`IPN_PID[]`).
    pub id: &'static str,
    /// Merchant product code (`IPN_PCODE[]`).
    pub code: &'static str,
    /// Display name (`IPN_PNAME[]`).
    pub name: &'static str,
    /// Price in USD cents, converted to the shopper's currency.
    pub usd_cents: i64,
    /// Subscription billing period in months; `None` for one-off products.
    pub period_months: Option<u32>,
    /// Tier for upgrades/downgrades (higher = more expensive plan of the same family).
    pub tier: u8,
}

impl Product {
    /// Price in USD.
    pub fn usd_price(&self) -> Decimal {
        Decimal::new(self.usd_cents, 2)
    }
}

/// The catalogue.
pub const PRODUCTS: &[Product] = &[
    Product {
        id: "40898000",
        code: "STARTER-M",
        name: "Starter (monthly)",
        usd_cents: 900,
        period_months: Some(1),
        tier: 1,
    },
    Product {
        id: "40898001",
        code: "PRO-M",
        name: "Pro (monthly)",
        usd_cents: 2900,
        period_months: Some(1),
        tier: 2,
    },
    Product {
        id: "40898002",
        code: "PRO-Y",
        name: "Pro (yearly)",
        usd_cents: 29000,
        period_months: Some(12),
        tier: 2,
    },
    Product {
        id: "40898003",
        code: "TEAM-Y",
        name: "Team – 5 seats (yearly)",
        usd_cents: 99000,
        period_months: Some(12),
        tier: 3,
    },
    Product {
        id: "40898004",
        code: "STORAGE-M",
        name: "Extra storage 100 GB",
        usd_cents: 500,
        period_months: Some(1),
        tier: 0,
    },
    Product {
        id: "40898005",
        code: "SUPPORT-1",
        name: "Priority onboarding (one-off)",
        usd_cents: 14900,
        period_months: None,
        tier: 0,
    },
];

/// Subscription products (the ones with a period).
pub fn subscription_products() -> impl Iterator<Item = &'static Product> {
    PRODUCTS.iter().filter(|p| p.period_months.is_some())
}

/// A country with its currency, VAT rate and sample address.
#[derive(Debug, Clone, Copy)]
pub struct Country {
    /// ISO alpha-2, upper case.
    pub code: &'static str,
    /// Full name as in IPN `COUNTRY`.
    pub name: &'static str,
    /// ISO 4217 currency the shopper pays in.
    pub currency: &'static str,
    /// VAT percent (basis points / 100).
    pub vat_bp: i64,
    /// USD per one unit of the currency, ×10⁶ (fixed for determinism).
    pub usd_rate_micro: i64,
    /// Sample streets.
    pub streets: &'static [&'static str],
    /// City.
    pub city: &'static str,
    /// State / region.
    pub state: &'static str,
    /// Postal code.
    pub zip: &'static str,
    /// Phone prefix.
    pub phone: &'static str,
}

impl Country {
    /// VAT percent.
    pub fn vat_rate(&self) -> Decimal {
        Decimal::new(self.vat_bp, 2)
    }
    /// USD per unit of the local currency.
    pub fn usd_rate(&self) -> Decimal {
        Decimal::new(self.usd_rate_micro, 6)
    }
}

/// Countries customers come from.
pub const COUNTRIES: &[Country] = &[
    Country {
        code: "US",
        name: "United States of America",
        currency: "USD",
        vat_bp: 0,
        usd_rate_micro: 1_000_000,
        streets: &["221 Market Street", "1600 Amphitheatre Pkwy"],
        city: "San Francisco",
        state: "CA",
        zip: "94105",
        phone: "+1 415 555 0",
    },
    Country {
        code: "DE",
        name: "Germany",
        currency: "EUR",
        vat_bp: 1900,
        usd_rate_micro: 1_080_000,
        streets: &["Königstraße 5", "Straße des 17. Juni 135"],
        city: "Köln",
        state: "NRW",
        zip: "50667",
        phone: "+49 221 555 ",
    },
    Country {
        code: "FR",
        name: "France",
        currency: "EUR",
        vat_bp: 2000,
        usd_rate_micro: 1_080_000,
        streets: &["3 rue de l'Église", "12 avenue Émile Zola"],
        city: "Orléans",
        state: "",
        zip: "45000",
        phone: "+33 2 38 55 ",
    },
    Country {
        code: "PT",
        name: "Portugal",
        currency: "EUR",
        vat_bp: 2300,
        usd_rate_micro: 1_080_000,
        streets: &["R. Álvaro Coutinho 14", "Av. da Liberdade 110"],
        city: "Lisboa",
        state: "",
        zip: "1150-019",
        phone: "+351 21 555 ",
    },
    Country {
        code: "RO",
        name: "Romania",
        currency: "RON",
        vat_bp: 1900,
        usd_rate_micro: 217_100,
        streets: &["Calea Victoriei 155", "Str. Ștefan cel Mare 3"],
        city: "București",
        state: "B",
        zip: "010073",
        phone: "+40 21 555 ",
    },
    Country {
        code: "GB",
        name: "United Kingdom",
        currency: "GBP",
        vat_bp: 2000,
        usd_rate_micro: 1_270_000,
        streets: &["221B Baker Street", "10 Downing Street"],
        city: "London",
        state: "",
        zip: "NW1 6XE",
        phone: "+44 20 5555 ",
    },
    Country {
        code: "JP",
        name: "Japan",
        currency: "JPY",
        vat_bp: 1000,
        usd_rate_micro: 6_700,
        streets: &["1-2-3 Shibuya", "渋谷区神南1-1"],
        city: "Tōkyō",
        state: "Tokyo",
        zip: "150-0041",
        phone: "+81 3 5555 ",
    },
    Country {
        code: "BH",
        name: "Bahrain",
        currency: "BHD",
        vat_bp: 1000,
        usd_rate_micro: 2_652_500,
        streets: &["Road 1701, Block 317"],
        city: "Manama",
        state: "",
        zip: "317",
        phone: "+973 1755 ",
    },
    Country {
        code: "BR",
        name: "Brazil",
        currency: "BRL",
        vat_bp: 0,
        usd_rate_micro: 200_000,
        streets: &["Av. Paulista 1578", "Rua Açaí 9"],
        city: "São Paulo",
        state: "SP",
        zip: "01310-200",
        phone: "+55 11 5555 ",
    },
    Country {
        code: "PL",
        name: "Poland",
        currency: "PLN",
        vat_bp: 2300,
        usd_rate_micro: 250_000,
        streets: &["ul. Żelazna 12", "ul. Łąkowa 7"],
        city: "Łódź",
        state: "",
        zip: "90-001",
        phone: "+48 42 555 ",
    },
    Country {
        code: "SE",
        name: "Sweden",
        currency: "SEK",
        vat_bp: 2500,
        usd_rate_micro: 95_000,
        streets: &["Drottninggatan 71", "Götgatan 14"],
        city: "Göteborg",
        state: "",
        zip: "411 14",
        phone: "+46 31 555 ",
    },
];

const FIRST_NAMES: &[&str] = &[
    "Álvaro",
    "Zoë",
    "Jürgen",
    "Søren",
    "François",
    "Łukasz",
    "Siobhán",
    "José",
    "Chloé",
    "María",
    "Björn",
    "Ömer",
    "Mei",
    "Hiroshi",
    "Olivia",
    "Noah",
    "Fatima",
    "Ahmed",
    "Ana",
    "Ştefan",
    "Agnès",
    "Renée",
    "Paul",
    "Emma",
];

const LAST_NAMES: &[&str] = &[
    "Coutinho",
    "Müller",
    "Østergaard",
    "Dubois",
    "Wiśniewski",
    "O'Brien",
    "García",
    "Nakamura",
    "Smith",
    "Al-Khalifa",
    "Popescu",
    "da Silva",
    "Brontë",
    "Kowalski",
    "Johansson",
    "Lefèvre",
    "Schäfer",
    "Yılmaz",
    "Tanaka",
    "Jones",
];

const COMPANIES: &[&str] = &[
    "Müller & Söhne GmbH",
    "Açaí Labs Ltda",
    "Nordlys Software AB",
    "Acme Corp",
    "Brontë Analytics Ltd",
    "Kōbō KK",
    "Popescu Software SRL",
    "Łódź Data Sp. z o.o.",
    "Émile & Co SARL",
    "Initech Inc.",
    "Globex Corporation",
    "Umbrella Systems",
    "Stark Industries",
    "Wayne Enterprises",
];

const FREE_MAIL: &[&str] = &[
    "gmail.com",
    "yahoo.com",
    "outlook.com",
    "hotmail.com",
    "gmx.de",
    "web.de",
    "icloud.com",
    "proton.me",
    "yahoo.co.jp",
    "uol.com.br",
];

/// A customer of the pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerProfile {
    /// First name (may be non-ASCII).
    pub first_name: String,
    /// Last name (may be non-ASCII).
    pub last_name: String,
    /// Company, when buying for one.
    pub company: Option<String>,
    /// E-mail as the shopper typed it (mixed case sometimes).
    pub email: String,
    /// Phone.
    pub phone: String,
    /// Index into [`COUNTRIES`].
    pub country: usize,
    /// Street address.
    pub street: String,
    /// `AVANGATE_CUSTOMER_REFERENCE`, absent for some customers (then the e-mail is
    /// the customer key).
    pub avangate_reference: Option<String>,
    /// `EXTERNAL_CUSTOMER_REFERENCE`, when the merchant sets one.
    pub external_reference: Option<String>,
    /// Shopper IP address (documentation ranges only).
    pub ip: String,
}

impl CustomerProfile {
    /// The customer's country.
    pub fn country(&self) -> &'static Country {
        &COUNTRIES[self.country]
    }
}

/// ASCII slug for e-mail local parts and domains.
pub fn ascii_slug(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars().flat_map(char::to_lowercase) {
        let mapped: &str = match c {
            'á' | 'à' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ą' => "a",
            'é' | 'è' | 'ê' | 'ë' | 'ē' | 'ę' => "e",
            'í' | 'ì' | 'î' | 'ï' | 'ı' => "i",
            'ó' | 'ò' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' => "o",
            'ú' | 'ù' | 'û' | 'ü' | 'ū' => "u",
            'ç' | 'ć' => "c",
            'ñ' | 'ń' => "n",
            'ś' | 'ş' | 'ș' => "s",
            'ţ' | 'ț' => "t",
            'ł' => "l",
            'ż' | 'ź' => "z",
            'ß' => "ss",
            'æ' => "ae",
            c if c.is_ascii_alphanumeric() => {
                out.push(c);
                continue;
            }
            _ => "",
        };
        out.push_str(mapped);
    }
    out
}

/// Build a deterministic pool of customers.
pub fn customer_pool(rng: &mut StdRng, size: usize) -> Vec<CustomerProfile> {
    (0..size.max(1))
        .map(|i| {
            let first = *FIRST_NAMES.choose(rng).unwrap_or(&"Ana");
            let last = *LAST_NAMES.choose(rng).unwrap_or(&"Smith");
            let country = rng.gen_range(0..COUNTRIES.len());
            let company = rng
                .gen_bool(0.55)
                .then(|| (*COMPANIES.choose(rng).unwrap_or(&"Acme Corp")).to_owned());
            let local = format!("{}.{}", ascii_slug(first), ascii_slug(last));
            let domain = match &company {
                Some(c) if rng.gen_bool(0.75) => {
                    let words: Vec<&str> = c.split_whitespace().take(2).collect();
                    format!("{}.com", ascii_slug(&words.join("")))
                }
                _ => (*FREE_MAIL.choose(rng).unwrap_or(&"gmail.com")).to_owned(),
            };
            let mut email = format!(
                "{local}{}@{domain}",
                if rng.gen_bool(0.3) {
                    rng.gen_range(1..99).to_string()
                } else {
                    String::new()
                }
            );
            if rng.gen_bool(0.15) {
                // Shoppers type e-mails with capitals; keys must normalise them.
                let mut chars: Vec<char> = email.chars().collect();
                if let Some(c) = chars.first_mut() {
                    *c = c.to_ascii_uppercase();
                }
                email = chars.into_iter().collect();
            }
            let c = &COUNTRIES[country];
            CustomerProfile {
                first_name: first.to_owned(),
                last_name: last.to_owned(),
                company,
                email,
                phone: format!("{}{:04}", c.phone, rng.gen_range(0..10_000)),
                country,
                street: (*c.streets.choose(rng).unwrap_or(&"Main Street 1")).to_owned(),
                avangate_reference: rng
                    .gen_bool(0.85)
                    .then(|| (700_000_000 + i as u64 * 7 + rng.gen_range(0..7)).to_string()),
                external_reference: rng.gen_bool(0.3).then(|| format!("CRM-{:05}", i + 1)),
                ip: format!("198.51.100.{}", rng.gen_range(1..255)),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use twocheckout::Currency;

    #[test]
    fn slug_transliterates() {
        assert_eq!(ascii_slug("Álvaro"), "alvaro");
        assert_eq!(ascii_slug("Łódź Data Sp."), "lodzdatasp");
        assert_eq!(ascii_slug("O'Brien"), "obrien");
        assert_eq!(ascii_slug("Schäfer"), "schafer");
    }

    #[test]
    fn catalogue_is_consistent() {
        for c in COUNTRIES {
            assert!(Currency::from_code(c.currency).is_ok(), "{}", c.currency);
            assert!(!c.streets.is_empty());
        }
        let mut ids: Vec<_> = PRODUCTS.iter().map(|p| p.id).collect();
        ids.dedup();
        assert_eq!(ids.len(), PRODUCTS.len());
    }

    #[test]
    fn pool_is_deterministic_and_varied() {
        let a = customer_pool(&mut StdRng::seed_from_u64(7), 50);
        let b = customer_pool(&mut StdRng::seed_from_u64(7), 50);
        assert_eq!(a, b);
        assert!(a
            .iter()
            .any(|c| !c.first_name.is_ascii() || !c.last_name.is_ascii()));
        assert!(a.iter().any(|c| c.company.is_some()) && a.iter().any(|c| c.company.is_none()));
        assert!(a
            .iter()
            .any(|c| FREE_MAIL.iter().any(|d| c.email.ends_with(d))));
        assert!(a
            .iter()
            .any(|c| !FREE_MAIL.iter().any(|d| c.email.ends_with(d))));
        assert!(a
            .iter()
            .all(|c| c.email.is_ascii() && c.email.contains('@')));
    }
}
