//! A SOQL subset: tokenizer, recursive-descent parser, resolver against the org schema and
//! evaluator over the record store.
//!
//! No crate parses SOQL (SQL parsers reject its relationship paths, date literals and
//! `\%`/`\_` LIKE escapes, and none produce Salesforce's error messages), so this module
//! is hand-written.
//!
//! Supported: `SELECT` field lists with parent relationship paths (`Account.Owner.Name`),
//! `COUNT()`, `COUNT(field) [alias]`; `FROM`; `WHERE` with `= != <> < > <= >= LIKE IN NOT IN
//! AND OR NOT` and parentheses, `NULL`; string (with `\' \" \\ \n \r \t \b \f \% \_` escapes),
//! number, boolean, date, datetime literals and the date literals `TODAY YESTERDAY TOMORROW
//! THIS_MONTH THIS_YEAR LAST_N_DAYS:n NEXT_N_DAYS:n`; `ORDER BY` (`ASC`/`DESC`,
//! `NULLS FIRST`/`LAST`); `LIMIT`; `OFFSET` (≤ 2000). Not supported (answered with
//! `MALFORMED_QUERY`): `GROUP BY`, `HAVING`, subqueries, `TYPEOF`, `WITH`, `FOR UPDATE`.
//!
//! Error messages follow Salesforce's shape: the query line, a caret under the offending
//! token, `ERROR at Row:R:Column:C`, then the reason.

use crate::error::SfError;
use crate::ids;
use crate::org::{FieldDef, FieldType, ObjectDef, Schema};
use crate::store::{format_datetime, parse_datetime, Fields, OrgState};
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use serde_json::{json, Map, Value};
use std::cmp::Ordering;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub row: usize,
    pub col: usize,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(Vec<(char, bool)>),
    Num(f64, String),
    Date(NaiveDate),
    DateTime(DateTime<Utc>),
    Comma,
    Dot,
    LParen,
    RParen,
    Colon,
    Op(&'static str),
    Eof,
}

impl Tok {
    fn display(&self) -> String {
        match self {
            Tok::Ident(s) => s.clone(),
            Tok::Str(cs) => format!("'{}'", cs.iter().map(|c| c.0).collect::<String>()),
            Tok::Num(_, raw) => raw.clone(),
            Tok::Date(d) => d.to_string(),
            Tok::DateTime(t) => format_datetime(*t),
            Tok::Comma => ",".into(),
            Tok::Dot => ".".into(),
            Tok::LParen => "(".into(),
            Tok::RParen => ")".into(),
            Tok::Colon => ":".into(),
            Tok::Op(o) => o.to_string(),
            Tok::Eof => "<EOF>".into(),
        }
    }
}

/// Error helper: builds a Salesforce-shaped SOQL error message.
fn soql_error(code: &str, query: &str, pos: Pos, detail: &str) -> SfError {
    let line = query.lines().nth(pos.row.saturating_sub(1)).unwrap_or("");
    let caret = " ".repeat(pos.col.saturating_sub(1));
    SfError::new(
        400,
        code,
        format!(
            "\n{line}\n{caret}^\nERROR at Row:{}:Column:{}\n{detail}",
            pos.row, pos.col
        ),
    )
}

struct Lexer<'a> {
    src: &'a str,
    chars: Vec<char>,
    i: usize,
    row: usize,
    col: usize,
}

impl<'a> Lexer<'a> {
    fn new(src: &'a str) -> Self {
        Lexer {
            src,
            chars: src.chars().collect(),
            i: 0,
            row: 1,
            col: 1,
        }
    }

    fn peek(&self, k: usize) -> Option<char> {
        self.chars.get(self.i + k).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.get(self.i).copied()?;
        self.i += 1;
        if c == '\n' {
            self.row += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    fn tokens(mut self) -> Result<Vec<(Tok, Pos)>, SfError> {
        let mut out = Vec::new();
        loop {
            while self.peek(0).is_some_and(char::is_whitespace) {
                self.bump();
            }
            let pos = Pos {
                row: self.row,
                col: self.col,
            };
            let Some(c) = self.peek(0) else {
                out.push((Tok::Eof, pos));
                return Ok(out);
            };
            let tok = match c {
                ',' => {
                    self.bump();
                    Tok::Comma
                }
                '.' if !self.peek(1).is_some_and(|d| d.is_ascii_digit()) => {
                    self.bump();
                    Tok::Dot
                }
                '(' => {
                    self.bump();
                    Tok::LParen
                }
                ')' => {
                    self.bump();
                    Tok::RParen
                }
                ':' => {
                    self.bump();
                    Tok::Colon
                }
                '=' => {
                    self.bump();
                    Tok::Op("=")
                }
                '!' if self.peek(1) == Some('=') => {
                    self.bump();
                    self.bump();
                    Tok::Op("!=")
                }
                '<' => {
                    self.bump();
                    match self.peek(0) {
                        Some('=') => {
                            self.bump();
                            Tok::Op("<=")
                        }
                        Some('>') => {
                            self.bump();
                            Tok::Op("!=")
                        }
                        _ => Tok::Op("<"),
                    }
                }
                '>' => {
                    self.bump();
                    if self.peek(0) == Some('=') {
                        self.bump();
                        Tok::Op(">=")
                    } else {
                        Tok::Op(">")
                    }
                }
                '\'' => self.string(pos)?,
                c if c.is_ascii_digit()
                    || c == '.'
                    || ((c == '-' || c == '+')
                        && self.peek(1).is_some_and(|d| d.is_ascii_digit() || d == '.')) =>
                {
                    self.number_or_date(pos)?
                }
                c if c.is_alphabetic() || c == '_' => {
                    let mut s = String::new();
                    while let Some(c) = self.peek(0) {
                        if c.is_alphanumeric() || c == '_' {
                            s.push(c);
                            self.bump();
                        } else {
                            break;
                        }
                    }
                    Tok::Ident(s)
                }
                other => {
                    return Err(soql_error(
                        "MALFORMED_QUERY",
                        self.src,
                        pos,
                        &format!("unexpected token: '{other}'"),
                    ))
                }
            };
            out.push((tok, pos));
        }
    }

    fn string(&mut self, pos: Pos) -> Result<Tok, SfError> {
        self.bump();
        let mut out = Vec::new();
        loop {
            let Some(c) = self.bump() else {
                return Err(soql_error(
                    "MALFORMED_QUERY",
                    self.src,
                    pos,
                    "unexpected token: '<EOF>'",
                ));
            };
            match c {
                '\'' => return Ok(Tok::Str(out)),
                '\\' => {
                    let Some(e) = self.bump() else {
                        return Err(soql_error(
                            "MALFORMED_QUERY",
                            self.src,
                            pos,
                            "unexpected token: '<EOF>'",
                        ));
                    };
                    let decoded = match e {
                        '\'' | '"' | '\\' => (e, false),
                        'n' => ('\n', false),
                        'r' => ('\r', false),
                        't' => ('\t', false),
                        'b' => ('\u{8}', false),
                        'f' => ('\u{c}', false),
                        '%' | '_' => (e, true),
                        other => {
                            return Err(soql_error(
                                "MALFORMED_QUERY",
                                self.src,
                                pos,
                                &format!("Invalid string literal. Illegal character sequence '\\{other}' in string literal."),
                            ))
                        }
                    };
                    out.push(decoded);
                }
                c => out.push((c, false)),
            }
        }
    }

    fn number_or_date(&mut self, pos: Pos) -> Result<Tok, SfError> {
        let mut s = String::new();
        while let Some(c) = self.peek(0) {
            let ok = c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '+');
            // A ':' only belongs to a datetime (after the 'T').
            if !ok
                || (c == ':' && !s.contains('T'))
                || ((c == '-' || c == '+')
                    && !s.is_empty()
                    && !s.contains('T')
                    && s.len() != 4
                    && s.len() != 7)
            {
                break;
            }
            s.push(c);
            self.bump();
        }
        if s.len() >= 10 && s.as_bytes().get(4) == Some(&b'-') {
            if s.len() == 10 {
                if let Ok(d) = NaiveDate::parse_from_str(&s, "%Y-%m-%d") {
                    return Ok(Tok::Date(d));
                }
            } else if let Some(t) = parse_datetime(&s) {
                return Ok(Tok::DateTime(t));
            }
            return Err(soql_error(
                "MALFORMED_QUERY",
                self.src,
                pos,
                &format!(
                    "line {}:{} no viable alternative at character '{}'",
                    pos.row, pos.col, s
                ),
            ));
        }
        match s.parse::<f64>() {
            Ok(x) => Ok(Tok::Num(x, s)),
            Err(_) => Err(soql_error(
                "MALFORMED_QUERY",
                self.src,
                pos,
                &format!("unexpected token: '{s}'"),
            )),
        }
    }
}

/// A field path as written, e.g. `Account.Owner.Name`.
#[derive(Debug, Clone)]
pub struct PathRef {
    pub parts: Vec<String>,
    pub pos: Pos,
}

#[derive(Debug, Clone)]
pub enum SelectItem {
    Field(PathRef),
    CountAll,
    Count {
        path: Option<PathRef>,
        alias: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Str(String),
    Pattern(Vec<(char, bool)>),
    Num(f64),
    Bool(bool),
    Null,
    Date(NaiveDate),
    DateTime(DateTime<Utc>),
    /// Half-open UTC day range for date literals like `TODAY`.
    Range(NaiveDate, NaiveDate),
}

#[derive(Debug, Clone)]
pub enum Cond {
    And(Box<Cond>, Box<Cond>),
    Or(Box<Cond>, Box<Cond>),
    Not(Box<Cond>),
    Cmp {
        path: PathRef,
        op: &'static str,
        value: Literal,
        vpos: Pos,
    },
    In {
        path: PathRef,
        not: bool,
        values: Vec<(Literal, Pos)>,
    },
    Like {
        path: PathRef,
        pattern: Vec<(char, bool)>,
    },
}

#[derive(Debug, Clone)]
pub struct OrderItem {
    pub path: PathRef,
    pub desc: bool,
    pub nulls_last: bool,
}

/// A parsed query.
#[derive(Debug, Clone)]
pub struct Query {
    pub select: Vec<SelectItem>,
    pub from: String,
    pub from_pos: Pos,
    pub filter: Option<Cond>,
    pub order: Vec<OrderItem>,
    pub limit: Option<usize>,
    pub offset: Option<usize>,
}

struct Parser<'a> {
    src: &'a str,
    toks: Vec<(Tok, Pos)>,
    i: usize,
}

fn is_kw(t: &Tok, kw: &str) -> bool {
    matches!(t, Tok::Ident(s) if s.eq_ignore_ascii_case(kw))
}

const RESERVED: &[&str] = &[
    "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "ORDER", "BY", "LIMIT", "OFFSET", "IN", "LIKE",
    "NULL", "ASC", "DESC", "NULLS", "GROUP", "HAVING", "WITH", "FOR", "USING", "INCLUDES",
    "EXCLUDES", "TRUE", "FALSE",
];

impl<'a> Parser<'a> {
    fn peek(&self) -> &Tok {
        &self.toks[self.i].0
    }
    fn pos(&self) -> Pos {
        self.toks[self.i].1
    }
    fn next(&mut self) -> (Tok, Pos) {
        let t = self.toks[self.i].clone();
        if self.i < self.toks.len() - 1 {
            self.i += 1;
        }
        t
    }
    fn unexpected(&self) -> SfError {
        soql_error(
            "MALFORMED_QUERY",
            self.src,
            self.pos(),
            &format!("unexpected token: '{}'", self.peek().display()),
        )
    }
    fn expect_kw(&mut self, kw: &str) -> Result<(), SfError> {
        if is_kw(self.peek(), kw) {
            self.next();
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }
    fn eat_kw(&mut self, kw: &str) -> bool {
        if is_kw(self.peek(), kw) {
            self.next();
            true
        } else {
            false
        }
    }

    fn ident(&mut self) -> Result<(String, Pos), SfError> {
        match self.peek().clone() {
            Tok::Ident(s) if !RESERVED.iter().any(|r| r.eq_ignore_ascii_case(&s)) => {
                let p = self.pos();
                self.next();
                Ok((s, p))
            }
            _ => Err(self.unexpected()),
        }
    }

    fn path(&mut self) -> Result<PathRef, SfError> {
        let (first, pos) = self.ident()?;
        let mut parts = vec![first];
        while *self.peek() == Tok::Dot {
            self.next();
            parts.push(self.ident()?.0);
        }
        Ok(PathRef { parts, pos })
    }

    fn query(&mut self) -> Result<Query, SfError> {
        self.expect_kw("SELECT")?;
        let mut select = Vec::new();
        loop {
            if is_kw(self.peek(), "COUNT")
                && self.toks.get(self.i + 1).map(|t| &t.0) == Some(&Tok::LParen)
            {
                self.next();
                self.next();
                if *self.peek() == Tok::RParen {
                    self.next();
                    select.push(SelectItem::CountAll);
                } else {
                    let p = self.path()?;
                    if *self.peek() != Tok::RParen {
                        return Err(self.unexpected());
                    }
                    self.next();
                    let alias = match self.peek().clone() {
                        Tok::Ident(s) if !RESERVED.iter().any(|r| r.eq_ignore_ascii_case(&s)) => {
                            self.next();
                            Some(s)
                        }
                        _ => None,
                    };
                    select.push(SelectItem::Count {
                        path: Some(p),
                        alias,
                    });
                }
            } else {
                select.push(SelectItem::Field(self.path()?));
            }
            if *self.peek() == Tok::Comma {
                self.next();
                continue;
            }
            break;
        }
        self.expect_kw("FROM")?;
        let (from, from_pos) = self.ident()?;
        let mut q = Query {
            select,
            from,
            from_pos,
            filter: None,
            order: Vec::new(),
            limit: None,
            offset: None,
        };
        if self.eat_kw("WHERE") {
            q.filter = Some(self.or_expr()?);
        }
        if self.eat_kw("ORDER") {
            self.expect_kw("BY")?;
            loop {
                let path = self.path()?;
                let desc = if self.eat_kw("DESC") {
                    true
                } else {
                    self.eat_kw("ASC");
                    false
                };
                let mut nulls_last = desc;
                if self.eat_kw("NULLS") {
                    if self.eat_kw("FIRST") {
                        nulls_last = false;
                    } else {
                        self.expect_kw("LAST")?;
                        nulls_last = true;
                    }
                }
                q.order.push(OrderItem {
                    path,
                    desc,
                    nulls_last,
                });
                if *self.peek() == Tok::Comma {
                    self.next();
                    continue;
                }
                break;
            }
        }
        if self.eat_kw("LIMIT") {
            q.limit = Some(self.count_number()?);
        }
        if self.eat_kw("OFFSET") {
            let p = self.pos();
            let n = self.count_number()?;
            if n > 2000 {
                return Err(soql_error(
                    "NUMBER_OUTSIDE_VALID_RANGE",
                    self.src,
                    p,
                    "Maximum SOQL offset allowed is 2000",
                ));
            }
            q.offset = Some(n);
        }
        if *self.peek() != Tok::Eof {
            return Err(self.unexpected());
        }
        Ok(q)
    }

    fn count_number(&mut self) -> Result<usize, SfError> {
        match self.peek().clone() {
            Tok::Num(x, _) if x >= 0.0 && x.fract() == 0.0 => {
                self.next();
                Ok(x as usize)
            }
            _ => Err(self.unexpected()),
        }
    }

    fn or_expr(&mut self) -> Result<Cond, SfError> {
        let mut left = self.and_expr()?;
        while self.eat_kw("OR") {
            let right = self.and_expr()?;
            left = Cond::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and_expr(&mut self) -> Result<Cond, SfError> {
        let mut left = self.not_expr()?;
        while self.eat_kw("AND") {
            let right = self.not_expr()?;
            left = Cond::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn not_expr(&mut self) -> Result<Cond, SfError> {
        if self.eat_kw("NOT") {
            return Ok(Cond::Not(Box::new(self.not_expr()?)));
        }
        if *self.peek() == Tok::LParen {
            self.next();
            let c = self.or_expr()?;
            if *self.peek() != Tok::RParen {
                return Err(self.unexpected());
            }
            self.next();
            return Ok(c);
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Cond, SfError> {
        let path = self.path()?;
        if self.eat_kw("LIKE") {
            let p = self.pos();
            return match self.next().0 {
                Tok::Str(cs) => Ok(Cond::Like { path, pattern: cs }),
                _ => Err(soql_error(
                    "MALFORMED_QUERY",
                    self.src,
                    p,
                    "unexpected token: LIKE requires a string literal",
                )),
            };
        }
        let not = if is_kw(self.peek(), "NOT")
            && self.toks.get(self.i + 1).is_some_and(|t| is_kw(&t.0, "IN"))
        {
            self.next();
            true
        } else {
            false
        };
        if self.eat_kw("IN") {
            if *self.peek() != Tok::LParen {
                return Err(self.unexpected());
            }
            self.next();
            let mut values = Vec::new();
            loop {
                let p = self.pos();
                values.push((self.literal()?, p));
                if *self.peek() == Tok::Comma {
                    self.next();
                    continue;
                }
                break;
            }
            if *self.peek() != Tok::RParen {
                return Err(self.unexpected());
            }
            self.next();
            return Ok(Cond::In { path, not, values });
        }
        if not {
            return Err(self.unexpected());
        }
        let op = match self.peek() {
            Tok::Op(o) => *o,
            _ => return Err(self.unexpected()),
        };
        self.next();
        let vpos = self.pos();
        let value = self.literal()?;
        Ok(Cond::Cmp {
            path,
            op,
            value,
            vpos,
        })
    }

    fn literal(&mut self) -> Result<Literal, SfError> {
        let (t, _) = self.next();
        let today = Utc::now().date_naive();
        let lit = match t {
            Tok::Str(cs) => Literal::Pattern(cs),
            Tok::Num(x, _) => Literal::Num(x),
            Tok::Date(d) => Literal::Date(d),
            Tok::DateTime(t) => Literal::DateTime(t),
            Tok::Ident(s) => match s.to_ascii_uppercase().as_str() {
                "NULL" => Literal::Null,
                "TRUE" => Literal::Bool(true),
                "FALSE" => Literal::Bool(false),
                "TODAY" => Literal::Range(today, today + Duration::days(1)),
                "YESTERDAY" => Literal::Range(today - Duration::days(1), today),
                "TOMORROW" => Literal::Range(today + Duration::days(1), today + Duration::days(2)),
                "THIS_MONTH" => {
                    let start = today.with_day(1).unwrap_or(today);
                    let next = if start.month() == 12 {
                        NaiveDate::from_ymd_opt(start.year() + 1, 1, 1)
                    } else {
                        NaiveDate::from_ymd_opt(start.year(), start.month() + 1, 1)
                    }
                    .unwrap_or(start);
                    Literal::Range(start, next)
                }
                "THIS_YEAR" => Literal::Range(
                    NaiveDate::from_ymd_opt(today.year(), 1, 1).unwrap_or(today),
                    NaiveDate::from_ymd_opt(today.year() + 1, 1, 1).unwrap_or(today),
                ),
                "LAST_N_DAYS" | "NEXT_N_DAYS" => {
                    if *self.peek() != Tok::Colon {
                        return Err(self.unexpected());
                    }
                    self.next();
                    let n = self.count_number()? as i64;
                    if s.eq_ignore_ascii_case("LAST_N_DAYS") {
                        Literal::Range(today - Duration::days(n), today + Duration::days(1))
                    } else {
                        Literal::Range(today + Duration::days(1), today + Duration::days(n + 1))
                    }
                }
                _ => {
                    self.i -= 1;
                    return Err(self.unexpected());
                }
            },
            _ => {
                self.i -= 1;
                return Err(self.unexpected());
            }
        };
        Ok(lit)
    }
}

/// Parses SOQL text.
pub fn parse(src: &str) -> Result<Query, SfError> {
    let toks = Lexer::new(src).tokens()?;
    let mut p = Parser { src, toks, i: 0 };
    p.query()
}

// ----- resolution ------------------------------------------------------------------

/// A path resolved against the schema.
#[derive(Debug, Clone)]
struct Resolved {
    /// Reference field names followed from the root (canonical), with relationship names.
    hops: Vec<(String, String)>,
    /// Final field (canonical) and its type.
    field: String,
    ftype: FieldType,
}

const WSDL: &str = " Please reference your WSDL or the describe call for the appropriate names.";

fn resolve(schema: &Schema, root: &ObjectDef, p: &PathRef, src: &str) -> Result<Resolved, SfError> {
    let mut objs: Vec<&ObjectDef> = vec![root];
    let mut hops = Vec::new();
    // A leading segment equal to the FROM object name is allowed (`Contact.Name`).
    let mut parts: &[String] = &p.parts;
    if parts.len() > 1
        && parts[0].eq_ignore_ascii_case(&root.name)
        && root.relationship(&parts[0]).is_none()
    {
        parts = &parts[1..];
    }
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        if last {
            let f: Option<&FieldDef> = objs.iter().find_map(|o| o.field(part));
            let Some(f) = f else {
                let entity = if objs.len() == 1 {
                    objs[0].name.clone()
                } else {
                    "Name".to_string()
                };
                return Err(soql_error(
                    "INVALID_FIELD",
                    src,
                    p.pos,
                    &format!(
                        "No such column '{part}' on entity '{entity}'. If you are attempting to use a custom field, be sure to append the '__c' after the custom field name.{WSDL}"
                    ),
                ));
            };
            return Ok(Resolved {
                hops,
                field: f.name.clone(),
                ftype: f.ftype,
            });
        }
        let rel: Option<&FieldDef> = objs.iter().find_map(|o| o.relationship(part));
        let Some(rel) = rel else {
            return Err(soql_error(
                "INVALID_FIELD",
                src,
                p.pos,
                &format!(
                    "Didn't understand relationship '{part}' in field path. If you are attempting to use a custom relationship, be sure to append the '__r' after the custom relationship name.{WSDL}"
                ),
            ));
        };
        hops.push((
            rel.name.clone(),
            rel.relationship_name.clone().unwrap_or_default(),
        ));
        objs = rel
            .reference_to
            .iter()
            .filter_map(|r| schema.object(r))
            .collect();
    }
    Err(soql_error(
        "MALFORMED_QUERY",
        src,
        p.pos,
        "unexpected token: '<EOF>'",
    ))
}

/// Output of a query before pagination.
#[derive(Debug, Clone)]
pub struct QueryOutput {
    pub total_size: usize,
    pub records: Vec<Value>,
    /// The sObject type queried (canonical).
    pub object: String,
}

enum Compiled {
    And(Box<Compiled>, Box<Compiled>),
    Or(Box<Compiled>, Box<Compiled>),
    Not(Box<Compiled>),
    Cmp(Resolved, &'static str, Literal),
    In(Resolved, bool, Vec<Literal>),
    Like(Resolved, Vec<(char, bool)>),
}

fn compile_literal(src: &str, r: &Resolved, lit: &Literal, pos: Pos) -> Result<Literal, SfError> {
    let type_err = |expected: &str| {
        soql_error(
            "INVALID_FIELD",
            src,
            pos,
            &format!(
                "value of filter criterion for field '{}' must be of type {} and should not be enclosed in quotes",
                r.field, expected
            ),
        )
    };
    let text = |cs: &[(char, bool)]| -> String {
        cs.iter()
            .map(|(c, esc)| {
                if *esc {
                    format!("\\{c}")
                } else {
                    c.to_string()
                }
            })
            .collect()
    };
    Ok(match (r.ftype, lit) {
        (_, Literal::Null) => Literal::Null,
        (FieldType::Id | FieldType::Reference, Literal::Pattern(cs)) => {
            let s = text(cs);
            match ids::normalize(&s) {
                Some(id) => Literal::Str(id),
                None => {
                    return Err(soql_error(
                        "INVALID_QUERY_FILTER_OPERATOR",
                        src,
                        pos,
                        &format!("invalid ID field: {s}"),
                    ))
                }
            }
        }
        (t, Literal::Pattern(cs)) if t.is_text() => Literal::Str(text(cs)),
        (t, Literal::Num(x)) if t.is_number() => Literal::Num(*x),
        (t, _) if t.is_number() => {
            return Err(type_err(if t == FieldType::Int { "int" } else { "double" }))
        }
        (FieldType::Boolean, Literal::Bool(b)) => Literal::Bool(*b),
        (FieldType::Boolean, _) => return Err(type_err("boolean")),
        (FieldType::Date, Literal::Date(d)) => Literal::Date(*d),
        (FieldType::Date, Literal::Range(a, b)) => Literal::Range(*a, *b),
        (FieldType::Date, _) => return Err(type_err("date")),
        (FieldType::Datetime, Literal::DateTime(t)) => Literal::DateTime(*t),
        (FieldType::Datetime, Literal::Range(a, b)) => Literal::Range(*a, *b),
        (FieldType::Datetime, _) => return Err(type_err("dateTime")),
        (t, Literal::Num(x)) if t.is_text() => Literal::Str(x.to_string()),
        (t, _) if t.is_text() => return Err(type_err("string")),
        (_, other) => other.clone(),
    })
}

fn compile(schema: &Schema, root: &ObjectDef, c: &Cond, src: &str) -> Result<Compiled, SfError> {
    Ok(match c {
        Cond::And(a, b) => Compiled::And(
            Box::new(compile(schema, root, a, src)?),
            Box::new(compile(schema, root, b, src)?),
        ),
        Cond::Or(a, b) => Compiled::Or(
            Box::new(compile(schema, root, a, src)?),
            Box::new(compile(schema, root, b, src)?),
        ),
        Cond::Not(a) => Compiled::Not(Box::new(compile(schema, root, a, src)?)),
        Cond::Cmp {
            path,
            op,
            value,
            vpos,
        } => {
            let r = resolve(schema, root, path, src)?;
            let lit = compile_literal(src, &r, value, *vpos)?;
            if lit == Literal::Null && !matches!(*op, "=" | "!=") {
                return Err(soql_error(
                    "MALFORMED_QUERY",
                    src,
                    *vpos,
                    "unexpected token: 'null'",
                ));
            }
            Compiled::Cmp(r, op, lit)
        }
        Cond::In { path, not, values } => {
            let r = resolve(schema, root, path, src)?;
            let mut lits = Vec::new();
            for (v, p) in values {
                lits.push(compile_literal(src, &r, v, *p)?);
            }
            Compiled::In(r, *not, lits)
        }
        Cond::Like { path, pattern } => {
            let r = resolve(schema, root, path, src)?;
            if !r.ftype.is_text() && !matches!(r.ftype, FieldType::Id | FieldType::Reference) {
                return Err(soql_error(
                    "INVALID_FIELD",
                    src,
                    path.pos,
                    &format!(
                        "invalid operator on id field or non-text field: {}",
                        r.field
                    ),
                ));
            }
            Compiled::Like(r, pattern.clone())
        }
    })
}

fn value_of<'a>(state: &'a OrgState, rec: &'a Fields, r: &Resolved) -> Option<&'a Value> {
    let mut cur = rec;
    for (field, _) in &r.hops {
        let id = cur.get(field)?.as_str()?;
        cur = state.get(id)?.1;
    }
    cur.get(&r.field).filter(|v| !v.is_null())
}

fn cmp_values(ftype: FieldType, v: &Value, lit: &Literal) -> Option<Ordering> {
    match (v, lit) {
        (Value::String(s), Literal::Str(l)) => {
            if matches!(ftype, FieldType::Id | FieldType::Reference) {
                Some(s.as_str().cmp(l.as_str()))
            } else {
                Some(s.to_lowercase().cmp(&l.to_lowercase()))
            }
        }
        (Value::Number(n), Literal::Num(x)) => n.as_f64()?.partial_cmp(x),
        (Value::Bool(b), Literal::Bool(l)) => Some(b.cmp(l)),
        (Value::String(s), Literal::Date(d)) => {
            let vd = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
            Some(vd.cmp(d))
        }
        (Value::String(s), Literal::DateTime(t)) => Some(parse_datetime(s)?.cmp(t)),
        _ => None,
    }
}

fn in_range(ftype: FieldType, v: &Value, a: &NaiveDate, b: &NaiveDate) -> Option<Ordering> {
    let s = v.as_str()?;
    let d = if ftype == FieldType::Date {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?
    } else {
        parse_datetime(s)?.date_naive()
    };
    Some(if d < *a {
        Ordering::Less
    } else if d >= *b {
        Ordering::Greater
    } else {
        Ordering::Equal
    })
}

fn eq_lit(ftype: FieldType, v: Option<&Value>, lit: &Literal) -> bool {
    match (v, lit) {
        (None, Literal::Null) => true,
        (None, _) | (Some(_), Literal::Null) => false,
        (Some(v), Literal::Range(a, b)) => in_range(ftype, v, a, b) == Some(Ordering::Equal),
        (Some(v), lit) => cmp_values(ftype, v, lit) == Some(Ordering::Equal),
    }
}

fn like(pattern: &[(char, bool)], text: &str) -> bool {
    let t: Vec<char> = text.to_lowercase().chars().collect();
    let p: Vec<(char, bool)> = pattern
        .iter()
        .map(|(c, e)| (c.to_lowercase().next().unwrap_or(*c), *e))
        .collect();
    // Iterative wildcard matching with backtracking on '%'.
    let (mut ti, mut pi) = (0usize, 0usize);
    let (mut star, mut mark) = (None::<usize>, 0usize);
    while ti < t.len() {
        if pi < p.len() && !p[pi].1 && p[pi].0 == '%' {
            star = Some(pi);
            pi += 1;
            mark = ti;
        } else if pi < p.len() && ((!p[pi].1 && p[pi].0 == '_') || p[pi].0 == t[ti]) {
            pi += 1;
            ti += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && !p[pi].1 && p[pi].0 == '%' {
        pi += 1;
    }
    pi == p.len()
}

fn eval(state: &OrgState, rec: &Fields, c: &Compiled) -> bool {
    match c {
        Compiled::And(a, b) => eval(state, rec, a) && eval(state, rec, b),
        Compiled::Or(a, b) => eval(state, rec, a) || eval(state, rec, b),
        Compiled::Not(a) => !eval(state, rec, a),
        Compiled::Cmp(r, op, lit) => {
            let v = value_of(state, rec, r);
            match *op {
                "=" => eq_lit(r.ftype, v, lit),
                "!=" => !eq_lit(r.ftype, v, lit),
                _ => {
                    let Some(v) = v else { return false };
                    let ord = match lit {
                        Literal::Range(a, b) => in_range(r.ftype, v, a, b),
                        lit => cmp_values(r.ftype, v, lit),
                    };
                    let Some(ord) = ord else { return false };
                    match *op {
                        "<" => ord == Ordering::Less,
                        "<=" => ord != Ordering::Greater,
                        ">" => ord == Ordering::Greater,
                        ">=" => ord != Ordering::Less,
                        _ => false,
                    }
                }
            }
        }
        Compiled::In(r, not, lits) => {
            let v = value_of(state, rec, r);
            let hit = lits.iter().any(|l| eq_lit(r.ftype, v, l));
            hit != *not
        }
        Compiled::Like(r, pattern) => match value_of(state, rec, r) {
            Some(Value::String(s)) => like(pattern, s),
            _ => false,
        },
    }
}

fn order_cmp(
    state: &OrgState,
    a: &Fields,
    b: &Fields,
    order: &[(Resolved, bool, bool)],
) -> Ordering {
    for (r, desc, nulls_last) in order {
        let (va, vb) = (value_of(state, a, r), value_of(state, b, r));
        let o = match (va, vb) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => {
                if *nulls_last {
                    Ordering::Greater
                } else {
                    Ordering::Less
                }
            }
            (Some(_), None) => {
                if *nulls_last {
                    Ordering::Less
                } else {
                    Ordering::Greater
                }
            }
            (Some(x), Some(y)) => {
                let base = match (x, y) {
                    (Value::Number(p), Value::Number(q)) => p
                        .as_f64()
                        .unwrap_or(0.0)
                        .partial_cmp(&q.as_f64().unwrap_or(0.0))
                        .unwrap_or(Ordering::Equal),
                    (Value::Bool(p), Value::Bool(q)) => p.cmp(q),
                    (Value::String(p), Value::String(q)) => {
                        if matches!(r.ftype, FieldType::Id | FieldType::Reference) {
                            p.cmp(q)
                        } else {
                            p.to_lowercase().cmp(&q.to_lowercase())
                        }
                    }
                    _ => Ordering::Equal,
                };
                if *desc {
                    base.reverse()
                } else {
                    base
                }
            }
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

/// `attributes` of a record in query/read output.
pub fn attributes(object: &str, id: &str, version: &str) -> Value {
    json!({"type": object, "url": format!("/services/data/{version}/sobjects/{object}/{id}")})
}

fn project(
    state: &OrgState,
    rec: &Fields,
    object: &str,
    fields: &[Resolved],
    version: &str,
) -> Value {
    let mut out = Map::new();
    let id = rec.get("Id").and_then(Value::as_str).unwrap_or("");
    out.insert("attributes".into(), attributes(object, id, version));
    for r in fields {
        insert_path(state, &mut out, rec, &r.hops, &r.field, version);
    }
    Value::Object(out)
}

fn insert_path(
    state: &OrgState,
    out: &mut Map<String, Value>,
    rec: &Fields,
    hops: &[(String, String)],
    field: &str,
    version: &str,
) {
    match hops.split_first() {
        None => {
            out.insert(
                field.to_string(),
                rec.get(field).cloned().unwrap_or(Value::Null),
            );
        }
        Some(((ref_field, rel_name), rest)) => {
            let parent = rec
                .get(ref_field)
                .and_then(Value::as_str)
                .and_then(|id| state.get(id));
            match parent {
                None => {
                    if !out.contains_key(rel_name) {
                        out.insert(rel_name.clone(), Value::Null);
                    }
                }
                Some((pobj, prec)) => {
                    let entry = out.entry(rel_name.clone()).or_insert(Value::Null);
                    if entry.is_null() {
                        let pid = prec.get("Id").and_then(Value::as_str).unwrap_or("");
                        let mut m = Map::new();
                        m.insert("attributes".into(), attributes(&pobj.name, pid, version));
                        *entry = Value::Object(m);
                    }
                    if let Value::Object(m) = entry {
                        insert_path(state, m, prec, rest, field, version);
                    }
                }
            }
        }
    }
}

/// Runs a parsed query against the store.
pub fn execute(
    state: &OrgState,
    src: &str,
    q: &Query,
    include_deleted: bool,
    version: &str,
) -> Result<QueryOutput, SfError> {
    let schema = state.schema.clone();
    let Some(root) = schema.object(&q.from) else {
        return Err(soql_error(
            "INVALID_TYPE",
            src,
            q.from_pos,
            &format!(
                "sObject type '{}' is not supported. If you are attempting to use a custom object, be sure to append the '__c' after the entity name.{WSDL}",
                q.from
            ),
        ));
    };
    let mut fields = Vec::new();
    let mut counts: Vec<(Option<Resolved>, String)> = Vec::new();
    let mut count_all = false;
    let mut first_plain: Option<&PathRef> = None;
    for item in &q.select {
        match item {
            SelectItem::Field(p) => {
                fields.push(resolve(&schema, root, p, src)?);
                first_plain.get_or_insert(p);
            }
            SelectItem::CountAll => count_all = true,
            SelectItem::Count { path, alias } => {
                let r = match path {
                    Some(p) => Some(resolve(&schema, root, p, src)?),
                    None => None,
                };
                let name = alias
                    .clone()
                    .unwrap_or_else(|| format!("expr{}", counts.len()));
                counts.push((r, name));
            }
        }
    }
    if count_all && q.select.len() > 1 {
        return Err(soql_error(
            "MALFORMED_QUERY",
            src,
            q.from_pos,
            "COUNT() must be the only element in the SELECT list.",
        ));
    }
    if !counts.is_empty() {
        if let Some(p) = first_plain {
            return Err(soql_error(
                "MALFORMED_QUERY",
                src,
                p.pos,
                &format!("Field must be grouped or aggregated: {}", p.parts.join(".")),
            ));
        }
    }
    let filter = match &q.filter {
        Some(c) => Some(compile(&schema, root, c, src)?),
        None => None,
    };
    let order: Vec<(Resolved, bool, bool)> = q
        .order
        .iter()
        .map(|o| resolve(&schema, root, &o.path, src).map(|r| (r, o.desc, o.nulls_last)))
        .collect::<Result<_, _>>()?;
    let table = state.tables.get(&root.name);
    let empty = Default::default();
    let live = table.map(|t| &t.live).unwrap_or(&empty);
    let deleted = table.map(|t| &t.deleted).unwrap_or(&empty);
    let mut rows: Vec<&Fields> = live
        .values()
        .chain(if include_deleted {
            deleted.values()
        } else {
            empty.values()
        })
        .filter(|r| filter.as_ref().is_none_or(|c| eval(state, r, c)))
        .collect();
    if count_all {
        let n = rows.len();
        let n = q.limit.map_or(n, |l| n.min(l));
        return Ok(QueryOutput {
            total_size: n,
            records: Vec::new(),
            object: root.name.clone(),
        });
    }
    if !counts.is_empty() {
        let mut m = Map::new();
        m.insert("attributes".into(), json!({"type": "AggregateResult"}));
        for (r, name) in &counts {
            let n = match r {
                None => rows.len(),
                Some(r) => rows
                    .iter()
                    .filter(|rec| value_of(state, rec, r).is_some())
                    .count(),
            };
            m.insert(name.clone(), json!(n));
        }
        return Ok(QueryOutput {
            total_size: 1,
            records: vec![Value::Object(m)],
            object: "AggregateResult".into(),
        });
    }
    if !order.is_empty() {
        rows.sort_by(|a, b| order_cmp(state, a, b, &order));
    }
    let offset = q.offset.unwrap_or(0);
    let rows: Vec<&Fields> = rows
        .into_iter()
        .skip(offset)
        .take(q.limit.unwrap_or(usize::MAX))
        .collect();
    let records: Vec<Value> = rows
        .iter()
        .map(|r| project(state, r, &root.name, &fields, version))
        .collect();
    Ok(QueryOutput {
        total_size: records.len(),
        records,
        object: root.name.clone(),
    })
}

/// Parses and runs SOQL text.
pub fn run(
    state: &OrgState,
    src: &str,
    include_deleted: bool,
    version: &str,
) -> Result<QueryOutput, SfError> {
    let q = parse(src)?;
    execute(state, src, &q, include_deleted, version)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::org::OrgDefinition;
    use crate::store::WriteOpts;
    use proptest::prelude::*;
    use std::sync::Arc;

    fn state() -> OrgState {
        let schema = Schema::build(&OrgDefinition::default(), false, &[], "USD").unwrap();
        let mut st = OrgState::new(Arc::new(schema), "integration@example.com", "USD", &[]);
        let o = WriteOpts {
            allow_save: true,
            ..WriteOpts::default()
        };
        let body = |v: Value| v.as_object().unwrap().clone();
        let a = st
            .insert(
                "Account",
                &body(json!({"Name": "Acme", "TwoCheckout_Customer_Ref__c": "C1"})),
                o,
            )
            .unwrap();
        st.insert("Account", &body(json!({"Name": "Beta 100%"})), o)
            .unwrap();
        st.insert("Contact", &body(json!({"LastName": "O'Brien", "FirstName": "Pat", "Email": "pat@acme.com", "AccountId": a})), o).unwrap();
        st.insert(
            "Contact",
            &body(json!({"LastName": "Smith", "Email": "s@x.com"})),
            o,
        )
        .unwrap();
        st.insert("Contact", &body(json!({"LastName": "Adams"})), o)
            .unwrap();
        st.insert("Opportunity", &body(json!({"Name": "O1", "StageName": "Closed Won", "CloseDate": "2024-03-01", "Amount": 50, "AccountId": a})), o).unwrap();
        st.insert("Opportunity", &body(json!({"Name": "O2", "StageName": "Prospecting", "CloseDate": "2024-05-01", "Amount": 150})), o).unwrap();
        st
    }

    fn names(out: &QueryOutput, key: &str) -> Vec<String> {
        out.records
            .iter()
            .map(|r| r[key].as_str().unwrap_or("null").to_string())
            .collect()
    }

    #[test]
    fn where_order_limit() {
        let st = state();
        let out = run(
            &st,
            "SELECT Id, LastName FROM Contact WHERE Email != null ORDER BY LastName",
            false,
            "v62.0",
        )
        .unwrap();
        assert_eq!(names(&out, "LastName"), vec!["O'Brien", "Smith"]);
        let out = run(
            &st,
            "select lastname from contact order by email desc nulls last limit 2",
            false,
            "v62.0",
        )
        .unwrap();
        assert_eq!(names(&out, "LastName"), vec!["Smith", "O'Brien"]);
        let out = run(
            &st,
            "SELECT LastName FROM Contact ORDER BY Email NULLS FIRST LIMIT 1 OFFSET 0",
            false,
            "v62.0",
        )
        .unwrap();
        assert_eq!(names(&out, "LastName"), vec!["Adams"]);
        let out = run(
            &st,
            "SELECT LastName FROM Contact WHERE LastName = 'o\\'brien'",
            false,
            "v62.0",
        )
        .unwrap();
        assert_eq!(out.total_size, 1);
        let out = run(&st, "SELECT Name FROM Opportunity WHERE Amount >= 100 OR (IsWon = true AND NOT CloseDate < 2024-01-01)", false, "v62.0").unwrap();
        assert_eq!(out.total_size, 2);
        let out = run(
            &st,
            "SELECT Name FROM Opportunity WHERE CloseDate > 2024-04-01",
            false,
            "v62.0",
        )
        .unwrap();
        assert_eq!(names(&out, "Name"), vec!["O2"]);
        let out = run(
            &st,
            "SELECT Name FROM Opportunity WHERE Name NOT IN ('O1') AND Amount IN (150, 3)",
            false,
            "v62.0",
        )
        .unwrap();
        assert_eq!(names(&out, "Name"), vec!["O2"]);
        let out = run(
            &st,
            "SELECT Name FROM Account WHERE Name LIKE '%100\\%'",
            false,
            "v62.0",
        )
        .unwrap();
        assert_eq!(names(&out, "Name"), vec!["Beta 100%"]);
        let out = run(
            &st,
            "SELECT Name FROM Account WHERE Name LIKE 'ac_e'",
            false,
            "v62.0",
        )
        .unwrap();
        assert_eq!(names(&out, "Name"), vec!["Acme"]);
        let out = run(&st, "SELECT Name FROM Opportunity WHERE CreatedDate = TODAY AND CreatedDate > 2020-01-01T00:00:00Z", false, "v62.0").unwrap();
        assert_eq!(out.total_size, 2);
    }

    #[test]
    fn parent_fields_and_counts() {
        let st = state();
        let out = run(
            &st,
            "SELECT LastName, Account.Name, Account.Owner.Name FROM Contact ORDER BY LastName",
            false,
            "v62.0",
        )
        .unwrap();
        assert_eq!(out.records[0]["Account"], Value::Null);
        assert_eq!(out.records[1]["Account"]["Name"], json!("Acme"));
        assert_eq!(
            out.records[1]["Account"]["attributes"]["type"],
            json!("Account")
        );
        assert_eq!(
            out.records[1]["Account"]["Owner"]["Name"],
            json!("Integration User")
        );
        let out = run(
            &st,
            "SELECT COUNT() FROM Contact WHERE Account.TwoCheckout_Customer_Ref__c = 'c1'",
            false,
            "v62.0",
        )
        .unwrap();
        assert_eq!((out.total_size, out.records.len()), (1, 0));
        let out = run(
            &st,
            "SELECT COUNT(Id) n, COUNT(Email) FROM Contact",
            false,
            "v62.0",
        )
        .unwrap();
        assert_eq!(out.records[0]["n"], json!(3));
        assert_eq!(out.records[0]["expr1"], json!(2));
    }

    #[test]
    fn errors_have_salesforce_shape() {
        let st = state();
        let e = run(&st, "SELECT Id, FROM Contact", false, "v62.0").unwrap_err();
        assert_eq!(e.code, "MALFORMED_QUERY");
        assert_eq!(e.message, "\nSELECT Id, FROM Contact\n           ^\nERROR at Row:1:Column:12\nunexpected token: 'FROM'");
        let e = run(&st, "SELECT Id FROM Contact WHERE", false, "v62.0").unwrap_err();
        assert!(
            e.message.ends_with("unexpected token: '<EOF>'"),
            "{}",
            e.message
        );
        let e = run(&st, "SELECT Id, Foo__c FROM Contact", false, "v62.0").unwrap_err();
        assert_eq!(e.code, "INVALID_FIELD");
        assert!(e
            .message
            .contains("ERROR at Row:1:Column:12\nNo such column 'Foo__c' on entity 'Contact'."));
        let e = run(&st, "SELECT COUNT() FROM XYZZY", false, "v62.0").unwrap_err();
        assert_eq!(e.code, "INVALID_TYPE");
        assert!(e.message.contains("sObject type 'XYZZY' is not supported."));
        let e = run(&st, "SELECT Id, Owner__r.Name FROM Contact", false, "v62.0").unwrap_err();
        assert!(e
            .message
            .contains("Didn't understand relationship 'Owner__r'"));
        let e = run(
            &st,
            "SELECT Id\nFROM Contact\nWHERE Nope__c = 1",
            false,
            "v62.0",
        )
        .unwrap_err();
        assert!(
            e.message.contains("ERROR at Row:3:Column:7"),
            "{}",
            e.message
        );
        let e = run(
            &st,
            "SELECT Id FROM Contact WHERE Id = 'abc'",
            false,
            "v62.0",
        )
        .unwrap_err();
        assert!(e.message.ends_with("invalid ID field: abc"));
        let e = run(
            &st,
            "SELECT Id FROM Opportunity WHERE Amount = '5'",
            false,
            "v62.0",
        )
        .unwrap_err();
        assert!(e.message.contains("must be of type double"));
        let e = run(
            &st,
            "SELECT Id FROM Contact WHERE LastName = 'a\\q'",
            false,
            "v62.0",
        )
        .unwrap_err();
        assert!(e.message.contains("Illegal character sequence"));
    }

    proptest! {
        #[test]
        fn string_literal_escaping_round_trips(s in "[ -~\\n\\t]{0,20}") {
            let mut esc = String::new();
            for c in s.chars() {
                match c {
                    '\'' => esc.push_str("\\'"),
                    '\\' => esc.push_str("\\\\"),
                    '\n' => esc.push_str("\\n"),
                    '\t' => esc.push_str("\\t"),
                    '"' => esc.push_str("\\\""),
                    c => esc.push(c),
                }
            }
            let q = parse(&format!("SELECT Id FROM Contact WHERE LastName = '{esc}'")).unwrap();
            let Some(Cond::Cmp { value: Literal::Pattern(cs), .. }) = q.filter else { panic!("not a comparison") };
            let decoded: String = cs.iter().map(|c| c.0).collect();
            prop_assert_eq!(decoded, s);
        }

        #[test]
        fn like_percent_matches_any_substring(a in "[a-z]{0,6}", b in "[a-z]{0,6}", c in "[a-z]{0,6}") {
            let pat: Vec<(char, bool)> = format!("%{b}%").chars().map(|c| (c, false)).collect();
            let text = format!("{a}{b}{c}");
            prop_assert!(like(&pat, &text));
        }

        #[test]
        fn tokenizer_never_panics(s in "\\PC{0,60}") {
            let _ = parse(&s);
        }
    }
}
