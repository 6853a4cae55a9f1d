//! Alertmanager label matchers (`name="value"`, `!=`, `=~`, `!~`, `{a="b", c=~"d"}`), parsed
//! exactly as Alertmanager v0.27+ parses them by default: the UTF-8 matchers parser first,
//! falling back to the classic parser for input only the classic one accepts. Regexes are
//! anchored as Alertmanager anchors them (`^(?:RE)$`, RE2 syntax) and a missing label equals
//! the empty string. Pure.

use std::fmt;
use std::str::FromStr;

use regex::Regex;

use crate::alert::LabelSet;

/// How a matcher compares a label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchType {
    /// `=`: equal.
    Equal,
    /// `!=`: not equal.
    NotEqual,
    /// `=~`: the whole value matches the regex.
    Regexp,
    /// `!~`: the whole value does not match the regex.
    NotRegexp,
}

impl MatchType {
    /// The operator as written: `=`, `!=`, `=~`, `!~`.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchType::Equal => "=",
            MatchType::NotEqual => "!=",
            MatchType::Regexp => "=~",
            MatchType::NotRegexp => "!~",
        }
    }
}

impl fmt::Display for MatchType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A matcher string that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid matcher {input:?}: column {column}: {message}")]
pub struct MatcherError {
    /// The whole matcher text.
    pub input: String,
    /// 1-based column (in characters) where the problem starts.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// One label matcher.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// Label name.
    pub name: String,
    /// Operator.
    pub op: MatchType,
    /// Value or regex as written (after unquoting).
    pub value: String,
    re: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

impl Eq for Matcher {}

impl Matcher {
    /// Build a matcher; regexes are compiled anchored, as `^(?:VALUE)$`.
    pub fn new(name: &str, op: MatchType, value: &str) -> Result<Matcher, String> {
        let re = match op {
            MatchType::Regexp | MatchType::NotRegexp => Some(compile_anchored(value)?),
            _ => None,
        };
        Ok(Matcher {
            name: name.to_string(),
            op,
            value: value.to_string(),
            re,
        })
    }

    /// Whether a label value satisfies this matcher.
    pub fn matches(&self, value: &str) -> bool {
        match (self.op, &self.re) {
            (MatchType::Equal, _) => value == self.value,
            (MatchType::NotEqual, _) => value != self.value,
            (MatchType::Regexp, Some(re)) => re.is_match(value),
            (MatchType::NotRegexp, Some(re)) => !re.is_match(value),
            // `new` always compiles a regex for the regex operators.
            (_, None) => false,
        }
    }

    /// Whether a label set satisfies this matcher; a missing label is the empty string.
    pub fn matches_labels(&self, labels: &LabelSet) -> bool {
        self.matches(labels.get(&self.name).map(String::as_str).unwrap_or(""))
    }
}

impl fmt::Display for Matcher {
    /// As Alertmanager prints a matcher: `name="value"` with OpenMetrics escaping, or both
    /// sides Go-quoted when the name needs quoting.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.name.chars().any(is_reserved) || self.name.is_empty() {
            write!(
                f,
                "{}{}{}",
                go_quote(&self.name),
                self.op,
                go_quote(&self.value)
            )
        } else {
            let v = self
                .value
                .replace('\\', "\\\\")
                .replace('\n', "\\n")
                .replace('"', "\\\"");
            write!(f, "{}{}\"{}\"", self.name, self.op, v)
        }
    }
}

fn go_quote(s: &str) -> String {
    // JSON string escaping is a subset of Go's strconv.Quote output that Go reads back.
    serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
}

/// Matchers that must all hold (a list like `{a="b", c=~"d"}`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Matchers(pub Vec<Matcher>);

impl Matchers {
    /// Parse zero or more matchers as Alertmanager does.
    pub fn parse(input: &str) -> Result<Matchers, MatcherError> {
        match utf8::parse(input) {
            Ok(ms) => Ok(Matchers(ms)),
            Err(utf8_err) => match classic::parse(input) {
                Ok(ms) => Ok(Matchers(ms)),
                Err(classic_err) => Err(MatcherError {
                    input: input.to_string(),
                    column: utf8_err.0 + 1,
                    // A bad regex reads better from the classic parser, which names it.
                    message: if classic_err.starts_with("invalid regex") {
                        classic_err
                    } else {
                        utf8_err.1
                    },
                }),
            },
        }
    }

    /// Whether every matcher holds for `labels`.
    pub fn matches(&self, labels: &LabelSet) -> bool {
        self.0.iter().all(|m| m.matches_labels(labels))
    }

    /// The matchers, in order.
    pub fn iter(&self) -> std::slice::Iter<'_, Matcher> {
        self.0.iter()
    }
}

impl FromStr for Matchers {
    type Err = MatcherError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Matchers::parse(s)
    }
}

impl fmt::Display for Matchers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, m) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{m}")?;
        }
        f.write_str("}")
    }
}

/// Alertmanager's set of characters that end an unquoted token.
fn is_reserved(c: char) -> bool {
    c.is_whitespace() || "{}!=~,\\\"'`".contains(c)
}

/// Compile `^(?:re)$` with Go RE2 semantics where Rust's differ: `\d`, `\w`, `\s`, `\b`
/// are ASCII-only in Go, and Go accepts `\Q...\E` literals.
fn compile_anchored(re: &str) -> Result<Regex, String> {
    let translated = translate_re2(re);
    Regex::new(&format!("^(?:{translated})$")).map_err(|e| {
        let detail = e.to_string();
        let last = detail.lines().last().unwrap_or("").trim();
        let last = last.strip_prefix("error: ").unwrap_or(last);
        format!("invalid regex {re:?}: {last}")
    })
}

fn translate_re2(re: &str) -> String {
    let mut out = String::with_capacity(re.len() + 8);
    let mut chars = re.chars().peekable();
    let mut in_class = false;
    let mut class_start = false;
    while let Some(c) = chars.next() {
        let at_class_start = class_start;
        class_start = false;
        match c {
            '\\' => {
                let Some(n) = chars.next() else {
                    out.push('\\');
                    break;
                };
                let (ascii, neg) = match n {
                    'd' => ("digit", false),
                    'D' => ("digit", true),
                    'w' => ("word", false),
                    'W' => ("word", true),
                    's' => ("space", false),
                    'S' => ("space", true),
                    'b' if !in_class => {
                        out.push_str("(?-u:\\b)");
                        continue;
                    }
                    'Q' if !in_class => {
                        let mut lit = String::new();
                        while let Some(l) = chars.next() {
                            if l == '\\' && chars.peek() == Some(&'E') {
                                chars.next();
                                break;
                            }
                            lit.push(l);
                        }
                        out.push_str(&regex::escape(&lit));
                        continue;
                    }
                    other => {
                        out.push('\\');
                        out.push(other);
                        continue;
                    }
                };
                let class = format!("[:{}{ascii}:]", if neg { "^" } else { "" });
                if in_class {
                    out.push_str(&class);
                } else {
                    out.push('[');
                    out.push_str(&class);
                    out.push(']');
                }
            }
            '[' if !in_class => {
                in_class = true;
                class_start = true;
                out.push('[');
                if chars.peek() == Some(&'^') {
                    chars.next();
                    out.push('^');
                }
            }
            '[' if in_class && chars.peek() == Some(&':') => {
                // A POSIX class such as [:alpha:] inside a bracket expression.
                out.push('[');
                for p in chars.by_ref() {
                    out.push(p);
                    if p == ']' {
                        break;
                    }
                }
            }
            ']' if in_class && !at_class_start => {
                in_class = false;
                out.push(']');
            }
            _ => out.push(c),
        }
    }
    out
}

/// Alertmanager's UTF-8 matchers parser (`matchers/parse`). Errors are a 0-based column and
/// a message.
mod utf8 {
    use super::{MatchType, Matcher, is_reserved};

    type Error = (usize, String);

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Kind {
        Open,
        Close,
        Comma,
        Op(MatchType),
        Quoted,
        Unquoted,
        Eof,
    }

    #[derive(Debug, Clone)]
    struct Token {
        kind: Kind,
        text: String,
        col: usize,
    }

    struct Lexer {
        chars: Vec<char>,
        pos: usize,
    }

    impl Lexer {
        fn scan(&mut self) -> Result<Token, Error> {
            while self.pos < self.chars.len() && self.chars[self.pos].is_whitespace() {
                self.pos += 1;
            }
            let start = self.pos;
            let Some(&c) = self.chars.get(start) else {
                return Ok(Token {
                    kind: Kind::Eof,
                    text: String::new(),
                    col: start,
                });
            };
            self.pos += 1;
            let kind = match c {
                '{' => Kind::Open,
                '}' => Kind::Close,
                ',' => Kind::Comma,
                '!' | '=' => {
                    let next = self.chars.get(self.pos).copied();
                    match (c, next) {
                        ('!', Some('=')) => {
                            self.pos += 1;
                            Kind::Op(MatchType::NotEqual)
                        }
                        ('!', Some('~')) => {
                            self.pos += 1;
                            Kind::Op(MatchType::NotRegexp)
                        }
                        ('!', _) => {
                            return Err((self.pos, "expected one of '=~' after '!'".into()));
                        }
                        (_, Some('~')) => {
                            self.pos += 1;
                            Kind::Op(MatchType::Regexp)
                        }
                        _ => Kind::Op(MatchType::Equal),
                    }
                }
                '"' => {
                    let mut escaped = false;
                    loop {
                        let Some(&n) = self.chars.get(self.pos) else {
                            return Err((
                                start,
                                "missing end \" (unterminated quoted text)".into(),
                            ));
                        };
                        self.pos += 1;
                        if escaped {
                            escaped = false;
                        } else if n == '\\' {
                            escaped = true;
                        } else if n == '"' {
                            break;
                        }
                    }
                    Kind::Quoted
                }
                c if !is_reserved(c) => {
                    while self.pos < self.chars.len() && !is_reserved(self.chars[self.pos]) {
                        self.pos += 1;
                    }
                    Kind::Unquoted
                }
                c => return Err((start, format!("{c}: invalid input"))),
            };
            Ok(Token {
                kind,
                text: self.chars[start..self.pos].iter().collect(),
                col: start,
            })
        }

        fn peek(&mut self) -> Result<Token, Error> {
            let pos = self.pos;
            let t = self.scan();
            self.pos = pos;
            t
        }
    }

    fn unexpected(t: &Token, what: &str) -> Error {
        if t.kind == Kind::Eof {
            (t.col, format!("unexpected end of input, {what}"))
        } else {
            (t.col, format!("unexpected {}: {what}", t.text))
        }
    }

    fn text(t: &Token) -> Result<String, Error> {
        if t.kind == Kind::Quoted {
            go_unquote(&t.text).map_err(|why| (t.col, format!("{}: invalid input: {why}", t.text)))
        } else {
            Ok(t.text.clone())
        }
    }

    pub(super) fn parse(input: &str) -> Result<Vec<Matcher>, Error> {
        let mut l = Lexer {
            chars: input.chars().collect(),
            pos: 0,
        };
        let mut out = Vec::new();
        let first = l.peek()?;
        if first.kind == Kind::Eof {
            return Ok(out);
        }
        let open = first.kind == Kind::Open;
        if open {
            l.scan()?;
        }
        loop {
            let t = l.peek()?;
            match t.kind {
                Kind::Close | Kind::Eof => break,
                Kind::Quoted | Kind::Unquoted => {}
                _ => return Err(unexpected(&t, "expected label name")),
            }
            l.scan()?;
            let name = text(&t)?;
            let op_tok = l.scan()?;
            let Kind::Op(op) = op_tok.kind else {
                return Err(unexpected(
                    &op_tok,
                    "expected an operator such as '=', '!=', '=~' or '!~'",
                ));
            };
            let v = l.scan()?;
            if !matches!(v.kind, Kind::Quoted | Kind::Unquoted) {
                return Err(unexpected(&v, "expected label value"));
            }
            let value = text(&v)?;
            out.push(Matcher::new(&name, op, &value).map_err(|e| (v.col, e))?);
            let end = l.peek()?;
            match end.kind {
                Kind::Comma => {
                    l.scan()?;
                }
                Kind::Close | Kind::Eof => break,
                _ => return Err(unexpected(&end, "expected a comma or close brace")),
            }
        }
        let t = l.scan()?;
        match (open, &t.kind) {
            (true, Kind::Close) | (false, Kind::Eof) => {}
            (true, _) => return Err(unexpected(&t, "expected close brace")),
            (false, _) => return Err(unexpected(&t, "expected opening brace")),
        }
        let t = l.scan()?;
        if t.kind != Kind::Eof {
            return Err(unexpected(&t, "expected end of input"));
        }
        Ok(out)
    }

    /// Go's `strconv.Unquote` for a double-quoted string.
    pub(super) fn go_unquote(quoted: &str) -> Result<String, String> {
        let inner = quoted
            .strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .ok_or("not a quoted string")?;
        if inner.contains('\n') {
            return Err("line feed inside quotes (write \\n)".into());
        }
        let mut out: Vec<u8> = Vec::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            if c == '"' {
                return Err("unescaped double quote".into());
            }
            if c != '\\' {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                continue;
            }
            let e = chars.next().ok_or("backslash at the end")?;
            let simple = match e {
                'a' => Some(7u8),
                'b' => Some(8),
                'f' => Some(12),
                'n' => Some(b'\n'),
                'r' => Some(b'\r'),
                't' => Some(b'\t'),
                'v' => Some(11),
                '\\' => Some(b'\\'),
                '"' => Some(b'"'),
                _ => None,
            };
            if let Some(b) = simple {
                out.push(b);
                continue;
            }
            let mut digits = |n: usize, radix: u32| -> Result<u32, String> {
                let s: String = chars.by_ref().take(n).collect();
                if s.chars().count() != n {
                    return Err(format!("short escape \\{e}{s}"));
                }
                u32::from_str_radix(&s, radix).map_err(|_| format!("invalid escape \\{e}{s}"))
            };
            match e {
                'x' => out.push(digits(2, 16)? as u8),
                'u' | 'U' => {
                    let n = digits(if e == 'u' { 4 } else { 8 }, 16)?;
                    let c = char::from_u32(n).ok_or(format!("invalid code point {n:#x}"))?;
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
                '0'..='7' => {
                    let rest: String = chars.by_ref().take(2).collect();
                    let v = u32::from_str_radix(&format!("{e}{rest}"), 8)
                        .map_err(|_| format!("invalid octal escape \\{e}{rest}"))?;
                    if rest.chars().count() != 2 || v > 255 {
                        return Err(format!("invalid octal escape \\{e}{rest}"));
                    }
                    out.push(v as u8);
                }
                other => return Err(format!("unknown escape \\{other}")),
            }
        }
        String::from_utf8(out).map_err(|_| "escapes do not form valid UTF-8".to_string())
    }
}

/// Alertmanager's classic matchers parser (`pkg/labels.ParseMatchers`), which it falls
/// back to.
mod classic {
    use std::sync::LazyLock;

    use regex::Regex;

    use super::{MatchType, Matcher};

    static RE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^[\t\n\f\r ]*([a-zA-Z_:][a-zA-Z0-9_:]*)[\t\n\f\r ]*(=~|=|!=|!~)[\t\n\f\r ]*((?s).*?)[\t\n\f\r ]*$")
            .unwrap_or_else(|e| unreachable!("constant regex: {e}"))
    });

    pub(super) fn parse(input: &str) -> Result<Vec<Matcher>, String> {
        let s = input.strip_prefix('{').unwrap_or(input);
        let s = s.strip_suffix('}').unwrap_or(s);
        let mut tokens = Vec::new();
        let mut token = String::new();
        let (mut inside_quotes, mut escaped) = (false, false);
        for c in s.chars() {
            match c {
                ',' if !inside_quotes => {
                    tokens.push(std::mem::take(&mut token));
                    continue;
                }
                ',' => {}
                '"' => {
                    if !escaped {
                        inside_quotes = !inside_quotes;
                    } else {
                        escaped = false;
                    }
                }
                '\\' => escaped = !escaped,
                _ => escaped = false,
            }
            token.push(c);
        }
        let last = token.trim();
        if !last.is_empty() {
            tokens.push(last.to_string());
        }
        tokens.iter().map(|t| parse_one(t)).collect()
    }

    fn parse_one(s: &str) -> Result<Matcher, String> {
        let caps = RE
            .captures(s)
            .ok_or_else(|| format!("bad matcher format: {s}"))?;
        let op = match &caps[2] {
            "=" => MatchType::Equal,
            "!=" => MatchType::NotEqual,
            "=~" => MatchType::Regexp,
            _ => MatchType::NotRegexp,
        };
        let raw_all = &caps[3];
        let (raw, mut expect_trailing_quote) = match raw_all.strip_prefix('"') {
            Some(r) => (r, true),
            None => (raw_all, false),
        };
        let mut value = String::new();
        let mut escaped = false;
        for (i, c) in raw.char_indices() {
            if escaped {
                escaped = false;
                match c {
                    'n' => value.push('\n'),
                    '"' | '\\' => value.push(c),
                    _ => {
                        value.push('\\');
                        value.push(c);
                    }
                }
                continue;
            }
            match c {
                '\\' if i < raw.len() - 1 => escaped = true,
                '\\' => value.push('\\'),
                '"' => {
                    if !expect_trailing_quote || i < raw.len() - 1 {
                        return Err(format!(
                            "matcher value contains unescaped double quote: {raw_all}"
                        ));
                    }
                    expect_trailing_quote = false;
                }
                _ => value.push(c),
            }
        }
        if expect_trailing_quote {
            return Err(format!(
                "matcher value contains unescaped double quote: {raw_all}"
            ));
        }
        Matcher::new(&caps[1], op, &value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> LabelSet {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn one(s: &str) -> Matcher {
        let ms = Matchers::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(ms.0.len(), 1, "{s}");
        ms.0.into_iter().next().unwrap()
    }

    #[test]
    fn every_operator_compares_as_alertmanager_does() {
        let l = labels(&[("severity", "critical"), ("team", "shop")]);
        assert!(one(r#"severity="critical""#).matches_labels(&l));
        assert!(!one(r#"severity="warning""#).matches_labels(&l));
        assert!(one(r#"severity!="warning""#).matches_labels(&l));
        assert!(!one(r#"severity!="critical""#).matches_labels(&l));
        assert!(one(r#"severity=~"crit.*""#).matches_labels(&l));
        assert!(!one(r#"severity=~"warn|info""#).matches_labels(&l));
        assert!(one(r#"severity!~"warn|info""#).matches_labels(&l));
        assert!(!one(r#"severity!~"critical|warning""#).matches_labels(&l));
    }

    #[test]
    fn regexes_are_anchored_at_both_ends() {
        let m = one(r#"namespace=~"prod""#);
        assert!(m.matches("prod"));
        assert!(!m.matches("preprod"));
        assert!(!m.matches("production"));
        let m = one(r#"namespace=~"a|b""#);
        assert!(m.matches("a") && m.matches("b") && !m.matches("ab"));
        assert!(one(r#"x!~"prod""#).matches("preprod"));
    }

    #[test]
    fn a_missing_label_equals_the_empty_string() {
        let l = labels(&[("alertname", "X")]);
        assert!(one(r#"team="""#).matches_labels(&l));
        assert!(one(r#"team=~".*""#).matches_labels(&l));
        assert!(!one(r#"team=~".+""#).matches_labels(&l));
        assert!(one(r#"team!="shop""#).matches_labels(&l));
    }

    #[test]
    fn lists_with_braces_quotes_and_trailing_commas_parse() {
        let ms = Matchers::parse(r#"{alertname="KubePodCrashLooping", namespace=~"shop|pay", }"#)
            .unwrap();
        assert_eq!(ms.0.len(), 2);
        assert_eq!(ms.0[1].op, MatchType::Regexp);
        assert_eq!(ms.0[1].value, "shop|pay");
        let ms = Matchers::parse("foo=bar,dings!=bums").unwrap();
        assert_eq!(ms.to_string(), r#"{foo="bar",dings!="bums"}"#);
        assert_eq!(Matchers::parse("").unwrap().0.len(), 0);
        assert_eq!(Matchers::parse("{}").unwrap().0.len(), 0);
    }

    #[test]
    fn escapes_in_quoted_values_are_decoded() {
        assert_eq!(
            one(r#"quote="She said: \"Hi, all\"""#).value,
            r#"She said: "Hi, all""#
        );
        assert_eq!(one(r#"x="a\nb""#).value, "a\nb");
        assert_eq!(one(r#"x="back\\slash""#).value, r"back\slash");
        assert_eq!(one(r#"x="\u00e9t\u00e9""#).value, "été");
        // A value only the classic parser accepts: a spurious escape stays literal.
        assert_eq!(one(r#"x=~"\d+""#).value, r"\d+");
    }

    #[test]
    fn utf8_label_names_work_when_quoted() {
        let m = one(r#""service name"="web""#);
        assert_eq!(m.name, "service name");
        assert_eq!(m.to_string(), r#""service name"="web""#);
    }

    #[test]
    fn regex_classes_are_ascii_like_go_re2() {
        let m = one(r#"code=~"\d{3}""#);
        assert!(m.matches("503"));
        assert!(!m.matches("５０３"), "fullwidth digits are not \\d in RE2");
        assert!(one(r#"x=~"[\w-]+""#).matches("web-1"));
        assert!(one(r#"x=~"\Qa.b\E""#).matches("a.b"));
        assert!(!one(r#"x=~"\Qa.b\E""#).matches("axb"));
    }

    #[test]
    fn errors_name_the_matcher_and_the_column() {
        let e = Matchers::parse(r#"severity=~"(crit""#).unwrap_err();
        assert!(e.to_string().contains(r#"severity=~\"(crit\""#), "{e}");
        assert!(e.message.starts_with("invalid regex"), "{e}");
        assert_eq!(e.column, 11);
        // Alertmanager accepts a missing close brace (the classic parser trims braces).
        assert_eq!(Matchers::parse(r#"{a="b""#).unwrap().0.len(), 1);
        let e = Matchers::parse(r#"a="b"#).unwrap_err();
        assert!(e.message.contains("missing end"), "{e}");
        assert_eq!(e.column, 3);
        let e = Matchers::parse("a!b").unwrap_err();
        assert_eq!(e.column, 3, "{e}");
        let e = Matchers::parse(r#"a="b"c"#).unwrap_err();
        assert!(e.to_string().contains("column"), "{e}");
        assert!(Matchers::parse("a=b,,c=d").is_err());
    }
}
