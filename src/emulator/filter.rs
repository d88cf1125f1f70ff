//! The `filter` of list and aggregatedList, and paging with `maxResults` / `pageToken`.
//!
//! Two styles, as in Compute: comparisons (`labels.env = "prod"`, `name != "x"`, `(a = "b") AND (c = "d")`,
//! `OR`, `:` for "has") and regular expressions (`name eq "natgw-.*"`, `description ne ".*x.*"`, RE2 full
//! matches). Like Google, a filter that mixes the two styles, or puts regular expressions on several fields,
//! is refused.

use regex::Regex;
use serde_json::Value;

use super::api_error::ApiError;
use super::world::base64;

#[derive(Debug, Clone)]
pub(crate) enum Filter {
    All,
    /// OR of ANDs.
    Compare(Vec<Vec<Cmp>>),
    /// AND of regular-expression constraints on one field.
    Regex(Vec<RegexCmp>),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Cmp {
    pub(crate) field: String,
    pub(crate) op: Op,
    pub(crate) value: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Has,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone)]
pub(crate) struct RegexCmp {
    pub(crate) field: String,
    pub(crate) negate: bool,
    pub(crate) regex: Regex,
}

fn invalid(filter: &str, why: &str) -> ApiError {
    ApiError::invalid_field(
        "filter",
        filter,
        &format!("Invalid list filter expression: {why}"),
    )
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Open,
    Close,
    Op(Op),
    Word(String),
    Quoted(String),
}

fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            c if c.is_whitespace() => i += 1,
            '(' => {
                out.push(Tok::Open);
                i += 1;
            }
            ')' => {
                out.push(Tok::Close);
                i += 1;
            }
            '"' => {
                let mut v = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("unterminated string".into()),
                        Some('"') => break,
                        Some('\\') if chars.get(i + 1) == Some(&'"') => {
                            v.push('"');
                            i += 2;
                        }
                        Some(ch) => {
                            v.push(*ch);
                            i += 1;
                        }
                    }
                }
                i += 1;
                out.push(Tok::Quoted(v));
            }
            '=' => {
                out.push(Tok::Op(Op::Eq));
                i += 1;
            }
            ':' => {
                out.push(Tok::Op(Op::Has));
                i += 1;
            }
            '!' if chars.get(i + 1) == Some(&'=') => {
                out.push(Tok::Op(Op::Ne));
                i += 2;
            }
            '<' | '>' => {
                let eq = chars.get(i + 1) == Some(&'=');
                out.push(Tok::Op(match (c, eq) {
                    ('<', false) => Op::Lt,
                    ('<', true) => Op::Le,
                    ('>', false) => Op::Gt,
                    _ => Op::Ge,
                }));
                i += if eq { 2 } else { 1 };
            }
            _ => {
                let mut v = String::new();
                while let Some(ch) = chars.get(i) {
                    if ch.is_whitespace()
                        || "()=:<>\"".contains(*ch)
                        || (*ch == '!' && chars.get(i + 1) == Some(&'='))
                    {
                        break;
                    }
                    v.push(*ch);
                    i += 1;
                }
                out.push(Tok::Word(v));
            }
        }
    }
    Ok(out)
}

/// Splits on whitespace outside quotes, keeping quotes: used to recognise the regular-expression style.
fn words(s: &str) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut was_quoted = false;
    for c in s.chars() {
        if c == '"' {
            quoted = !quoted;
            was_quoted = true;
        } else if c.is_whitespace() && !quoted {
            if !cur.is_empty() || was_quoted {
                out.push((std::mem::take(&mut cur), was_quoted));
            }
            was_quoted = false;
        } else {
            cur.push(c);
        }
    }
    if !cur.is_empty() || was_quoted {
        out.push((cur, was_quoted));
    }
    out
}

impl Filter {
    pub(crate) fn parse(s: &str) -> Result<Filter, ApiError> {
        let trimmed = s.trim();
        if trimmed.is_empty() {
            return Ok(Filter::All);
        }
        let ws = words(trimmed);
        let regex_style = ws.iter().any(|(w, q)| !q && (w == "eq" || w == "ne"));
        if regex_style {
            Self::parse_regex(trimmed, &ws)
        } else {
            let toks = tokenize(trimmed).map_err(|e| invalid(s, &e))?;
            let mut p = Parser { toks, pos: 0 };
            let f = p.or().map_err(|e| invalid(s, &e))?;
            if p.pos != p.toks.len() {
                return Err(invalid(s, "unexpected trailing input"));
            }
            Ok(Filter::Compare(f))
        }
    }

    fn parse_regex(s: &str, ws: &[(String, bool)]) -> Result<Filter, ApiError> {
        if !ws.len().is_multiple_of(3) {
            return Err(invalid(
                s,
                "expected FIELD eq|ne REGEX; comparison operators (=, !=, :) cannot be mixed with eq/ne",
            ));
        }
        let mut out: Vec<RegexCmp> = Vec::new();
        for t in ws.chunks(3) {
            let (field, fq) = &t[0];
            let (op, oq) = &t[1];
            let (value, _) = &t[2];
            if *fq || *oq || (op != "eq" && op != "ne") || field.contains(['=', ':', '(', ')', '!'])
            {
                return Err(invalid(
                    s,
                    "expected FIELD eq|ne REGEX; comparison operators (=, !=, :) cannot be mixed with eq/ne",
                ));
            }
            if let Some(first) = out.first()
                && first.field != *field
            {
                return Err(invalid(
                    s,
                    "regular expressions can constrain only one field per filter",
                ));
            }
            let regex = Regex::new(&format!("^(?:{value})$"))
                .map_err(|e| invalid(s, &format!("bad regular expression: {e}")))?;
            out.push(RegexCmp {
                field: field.clone(),
                negate: op == "ne",
                regex,
            });
        }
        Ok(Filter::Regex(out))
    }

    pub(crate) fn matches(&self, item: &Value) -> bool {
        match self {
            Filter::All => true,
            Filter::Compare(ors) => ors.iter().any(|ands| ands.iter().all(|c| c.matches(item))),
            Filter::Regex(cs) => cs.iter().all(|c| {
                let hit = field_values(item, &c.field)
                    .iter()
                    .any(|v| c.regex.is_match(v));
                hit != c.negate
            }),
        }
    }
}

/// The string forms of a field (several for arrays); empty when missing.
fn field_values(item: &Value, field: &str) -> Vec<String> {
    let mut cur = item;
    for part in field.split('.') {
        match cur.get(part) {
            Some(v) => cur = v,
            None => return Vec::new(),
        }
    }
    let one = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    match cur {
        Value::Array(a) => a.iter().filter_map(one).collect(),
        v => one(v).into_iter().collect(),
    }
}

impl Cmp {
    fn matches(&self, item: &Value) -> bool {
        let values = field_values(item, &self.field);
        let cmp = |v: &String| match (v.parse::<f64>(), self.value.parse::<f64>()) {
            (Ok(a), Ok(b)) => a.partial_cmp(&b),
            _ => Some(v.as_str().cmp(self.value.as_str())),
        };
        match self.op {
            Op::Eq => values.contains(&self.value),
            Op::Ne => !values.contains(&self.value),
            Op::Has => {
                if self.value == "*" {
                    !values.is_empty()
                } else {
                    values.contains(&self.value)
                }
            }
            Op::Lt => values.iter().any(|v| cmp(v).is_some_and(|o| o.is_lt())),
            Op::Le => values.iter().any(|v| cmp(v).is_some_and(|o| o.is_le())),
            Op::Gt => values.iter().any(|v| cmp(v).is_some_and(|o| o.is_gt())),
            Op::Ge => values.iter().any(|v| cmp(v).is_some_and(|o| o.is_ge())),
        }
    }
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(x)) if x == w)
    }

    fn or(&mut self) -> Result<Vec<Vec<Cmp>>, String> {
        let mut out = self.and()?;
        while self.is_word("OR") {
            self.pos += 1;
            let rhs = self.and()?;
            out.extend(rhs);
        }
        Ok(out)
    }

    /// AND of terms, each term itself an OR of ANDs: distribute into disjunctive normal form.
    fn and(&mut self) -> Result<Vec<Vec<Cmp>>, String> {
        let mut acc: Vec<Vec<Cmp>> = vec![Vec::new()];
        let mut first = true;
        loop {
            if self.is_word("AND") {
                if first {
                    return Err("AND without a left side".into());
                }
                self.pos += 1;
            } else if !first
                && (self.peek().is_none() || self.is_word("OR") || self.peek() == Some(&Tok::Close))
            {
                break;
            }
            let term = self.term()?;
            let mut next = Vec::new();
            for a in &acc {
                for t in &term {
                    let mut c = a.clone();
                    c.extend(t.iter().cloned());
                    next.push(c);
                }
            }
            acc = next;
            first = false;
        }
        Ok(acc)
    }

    fn term(&mut self) -> Result<Vec<Vec<Cmp>>, String> {
        match self.peek() {
            Some(Tok::Open) => {
                self.pos += 1;
                let inner = self.or()?;
                if self.peek() != Some(&Tok::Close) {
                    return Err("missing )".into());
                }
                self.pos += 1;
                Ok(inner)
            }
            Some(Tok::Word(field)) => {
                let field = field.clone();
                self.pos += 1;
                let op = match self.peek() {
                    Some(Tok::Op(op)) => *op,
                    _ => return Err(format!("expected an operator after {field}")),
                };
                self.pos += 1;
                let value = match self.peek() {
                    Some(Tok::Word(v) | Tok::Quoted(v)) => v.clone(),
                    _ => return Err(format!("expected a value after {field}")),
                };
                self.pos += 1;
                Ok(vec![vec![Cmp { field, op, value }]])
            }
            _ => Err("expected a comparison".into()),
        }
    }
}

/// One page of `items` (sorted by key): `(page, nextPageToken)`. The token names the last key returned, so
/// inserts and deletes between pages neither repeat nor skip items.
pub(crate) fn page<T>(
    items: Vec<(String, T)>,
    max_results: Option<&str>,
    page_token: Option<&str>,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    let max = match max_results {
        None | Some("") => 500,
        Some(m) => match m.parse::<usize>() {
            Ok(0) => 500,
            Ok(n) if n <= 500 => n,
            _ => {
                return Err(ApiError::invalid_field(
                    "maxResults",
                    m,
                    "Must be a number between 0 and 500.",
                ));
            }
        },
    };
    let after = match page_token {
        None | Some("") => None,
        Some(t) => Some(decode_token(t).ok_or_else(|| {
            ApiError::invalid_field("pageToken", t, "The page token is not valid.")
        })?),
    };
    let mut rest: Vec<(String, T)> = items
        .into_iter()
        .filter(|(k, _)| after.as_ref().is_none_or(|a| k > a))
        .collect();
    let more = rest.len() > max;
    rest.truncate(max);
    let token = if more {
        rest.last()
            .map(|(k, _)| base64(format!("after:{k}").as_bytes()))
    } else {
        None
    };
    Ok((rest.into_iter().map(|(_, v)| v).collect(), token))
}

fn decode_token(t: &str) -> Option<String> {
    const ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bits: u32 = 0;
    let mut n = 0;
    let mut out = Vec::new();
    for c in t.trim_end_matches('=').chars() {
        let v = u32::try_from(ALPHABET.find(c)?).ok()?;
        bits = (bits << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push(u8::try_from((bits >> n) & 0xff).ok()?);
        }
    }
    String::from_utf8(out)
        .ok()?
        .strip_prefix("after:")
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn item() -> Value {
        json!({"name": "natgw-gw", "description": "x natgw-stack=gitlab y", "labels": {"natgw-stack": "gitlab"},
               "status": "RUNNING", "priority": 900, "tags": {"items": ["a", "b"]}})
    }

    fn ok(f: &str) -> bool {
        Filter::parse(f).expect("filter parses").matches(&item())
    }

    #[test]
    fn comparisons() {
        assert!(ok(r#"labels.natgw-stack = "gitlab""#));
        assert!(ok("labels.natgw-stack=gitlab"));
        assert!(!ok(r#"labels.natgw-stack = "other""#));
        assert!(ok(r#"name != "x""#));
        assert!(ok(
            r#"(status = RUNNING) AND (labels.natgw-stack = "gitlab")"#
        ));
        assert!(ok(
            r#"(status = STOPPED) OR (labels.natgw-stack = "gitlab")"#
        ));
        assert!(!ok(r#"status = STOPPED OR labels.natgw-stack = "x""#));
        assert!(ok("labels.natgw-stack:*"));
        assert!(!ok("labels.missing:*"));
        assert!(ok("tags.items = b"));
        assert!(ok("priority < 1000"));
        assert!(!ok("priority > 1000"));
        assert!(ok(""));
    }

    #[test]
    fn regular_expressions_are_full_matches() {
        assert!(ok(r#"description eq ".*natgw-stack=gitlab.*""#));
        assert!(!ok(r#"description eq "natgw-stack=gitlab""#));
        assert!(ok("name eq natgw-.*"));
        assert!(ok("name ne other-.*"));
        assert!(!ok("name ne natgw-.*"));
        assert!(ok("name eq natgw-.* name ne .*-x"));
    }

    #[test]
    fn refused_filters() {
        for f in [
            r#"name eq "a.*" labels.x = "y""#,
            r#"name eq "a.*" description eq "b""#,
            r#"name = "a" AND description eq "b""#,
            "name =",
            "(name = a",
            r#"name = "a"#,
            "name eq (",
        ] {
            assert!(Filter::parse(f).is_err(), "{f} should be refused");
        }
    }

    #[test]
    fn paging_walks_every_item_once() {
        let items: Vec<(String, u32)> = (0..7).map(|i| (format!("k{i}"), i)).collect();
        let (p1, t1) = page(items.clone(), Some("3"), None).expect("page 1");
        assert_eq!(p1, vec![0, 1, 2]);
        let (p2, t2) = page(items.clone(), Some("3"), t1.as_deref()).expect("page 2");
        assert_eq!(p2, vec![3, 4, 5]);
        let (p3, t3) = page(items.clone(), Some("3"), t2.as_deref()).expect("page 3");
        assert_eq!(p3, vec![6]);
        assert!(t3.is_none());
        assert!(page(items.clone(), Some("501"), None).is_err());
        assert!(page(items, None, Some("!!")).is_err());
    }
}
