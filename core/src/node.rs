//! A reader for PostgreSQL's node-tree text (`nodeToString`, `pg_node_tree`).
//!
//! The server analyses a TVIEW definition and stores the result in
//! `pg_rewrite.ev_action`; we read that text instead of walking C structs, so
//! everything downstream of this module is plain Rust, testable with fixtures
//! captured from a real server. The grammar (PostgreSQL 15 `outfuncs.c`):
//!
//! ```text
//! value   := node | list | '<>' | atom | atom bytes
//! node    := '{' TAG (':' field value)* '}'
//! list    := '(' value* ')' | '(' ('i'|'o'|'b') atom* ')'
//! bytes   := '[' atom* ']'          -- a Const's datum image, after its length
//! ```
//! Atoms are bare tokens with backslash escapes, or double-quoted strings
//! (list elements of type String). Only the shape matters here; typed
//! accessors live in [`crate::query`].

use std::fmt;

/// One parsed value of a node tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `<>`: a NULL pointer.
    Null,
    /// A node: `{TAG :field value ...}`.
    Node(Node),
    /// A list of values: `(...)`.
    List(Vec<Value>),
    /// An integer list `(i 1 2)`, OID list `(o ...)` or bitmapset `(b ...)`.
    IntList(char, Vec<i64>),
    /// A bare token or a quoted string (unescaped).
    Atom(String),
    /// A Const's datum image: length followed by `[ b0 b1 ... ]`.
    Bytes(Vec<u8>),
}

/// A node: its tag and its fields in order of appearance.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub tag: String,
    pub fields: Vec<(String, Value)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub offset: usize,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "node tree text at offset {}: {}",
            self.offset, self.message
        )
    }
}

impl std::error::Error for ParseError {}

impl Node {
    /// The value of field `name`, `Null` when absent.
    pub fn get(&self, name: &str) -> &Value {
        static NULL: Value = Value::Null;
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
            .unwrap_or(&NULL)
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.get(name).as_node()
    }

    pub fn list(&self, name: &str) -> &[Value] {
        self.get(name).as_list()
    }

    pub fn int(&self, name: &str) -> Option<i64> {
        self.get(name).as_int()
    }

    pub fn uint(&self, name: &str) -> Option<u32> {
        self.int(name).and_then(|v| u32::try_from(v).ok())
    }

    pub fn str(&self, name: &str) -> Option<&str> {
        self.get(name).as_str()
    }

    pub fn bool(&self, name: &str) -> bool {
        self.str(name) == Some("true")
    }

    pub fn is(&self, tag: &str) -> bool {
        self.tag == tag
    }

    /// Visits this node and every node below it, depth first.
    pub fn walk<'a>(&'a self, f: &mut dyn FnMut(&'a Node)) {
        f(self);
        for (_, v) in &self.fields {
            v.walk(f);
        }
    }

    /// Like [`Node::walk`], but skips the children of nodes for which `f`
    /// returns false.
    pub fn walk_pruned<'a>(&'a self, f: &mut dyn FnMut(&'a Node) -> bool) {
        if f(self) {
            for (_, v) in &self.fields {
                v.walk_pruned(f);
            }
        }
    }
}

impl Value {
    pub fn as_node(&self) -> Option<&Node> {
        match self {
            Value::Node(n) => Some(n),
            _ => None,
        }
    }

    pub fn as_list(&self) -> &[Value] {
        match self {
            Value::List(l) => l,
            _ => &[],
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Atom(a) => a.parse().ok(),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Atom(a) => Some(a),
            _ => None,
        }
    }

    pub fn int_list(&self) -> &[i64] {
        match self {
            Value::IntList(_, l) => l,
            _ => &[],
        }
    }

    pub fn walk<'a>(&'a self, f: &mut dyn FnMut(&'a Node)) {
        match self {
            Value::Node(n) => n.walk(f),
            Value::List(l) => l.iter().for_each(|v| v.walk(f)),
            _ => {}
        }
    }

    pub fn walk_pruned<'a>(&'a self, f: &mut dyn FnMut(&'a Node) -> bool) {
        match self {
            Value::Node(n) => n.walk_pruned(f),
            Value::List(l) => l.iter().for_each(|v| v.walk_pruned(f)),
            _ => {}
        }
    }
}

/// Parses one value (usually a list holding one `QUERY` node).
pub fn parse(text: &str) -> Result<Value, ParseError> {
    let mut p = Parser {
        src: text.as_bytes(),
        pos: 0,
    };
    let v = p.value()?;
    p.skip_ws();
    if p.pos != p.src.len() {
        return Err(p.error("trailing text after the node tree"));
    }
    Ok(v)
}

struct Parser<'a> {
    src: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn error(&self, message: &str) -> ParseError {
        ParseError {
            offset: self.pos,
            message: message.to_string(),
        }
    }

    fn skip_ws(&mut self) {
        while self.pos < self.src.len() && self.src[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.skip_ws();
        self.src.get(self.pos).copied()
    }

    fn value(&mut self) -> Result<Value, ParseError> {
        match self.peek() {
            None => Err(self.error("unexpected end of text")),
            Some(b'{') => self.node().map(Value::Node),
            Some(b'(') => self.list(),
            Some(b'<') if self.src[self.pos..].starts_with(b"<>") => {
                self.pos += 2;
                Ok(Value::Null)
            }
            Some(b'"') => self.quoted().map(Value::Atom),
            Some(b')' | b'}' | b']') => Err(self.error("unexpected closing bracket")),
            Some(_) => {
                let atom = self.atom()?;
                // A Const's datum: `:constvalue 4 [ 1 0 0 0 ... ]`.
                if self.peek() == Some(b'[') {
                    return self.bytes();
                }
                Ok(Value::Atom(atom))
            }
        }
    }

    fn node(&mut self) -> Result<Node, ParseError> {
        self.pos += 1; // '{'
        let tag = self.atom()?;
        let mut fields = Vec::new();
        loop {
            match self.peek() {
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Node { tag, fields });
                }
                Some(b':') => {
                    self.pos += 1;
                    let name = self.atom()?;
                    // A field may be empty right before the next field or the end.
                    let value = match self.peek() {
                        Some(b':') | Some(b'}') => Value::Null,
                        _ => self.value()?,
                    };
                    fields.push((name, value));
                }
                None => return Err(self.error("unterminated node")),
                Some(_) => return Err(self.error("expected ':field' or '}' in node")),
            }
        }
    }

    fn list(&mut self) -> Result<Value, ParseError> {
        self.pos += 1; // '('
        // Integer, OID and bitmapset lists start with a one-letter marker.
        if let Some(&kind @ (b'i' | b'o' | b'b')) = self.src.get(self.pos) {
            let next = self.src.get(self.pos + 1).copied();
            if matches!(next, Some(b' ') | Some(b')')) {
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    match self.peek() {
                        Some(b')') => {
                            self.pos += 1;
                            return Ok(Value::IntList(kind as char, items));
                        }
                        None => return Err(self.error("unterminated integer list")),
                        Some(_) => {
                            let a = self.atom()?;
                            let n = a
                                .parse()
                                .map_err(|_| self.error("integer list element is not a number"))?;
                            items.push(n);
                        }
                    }
                }
            }
        }
        let mut items = Vec::new();
        loop {
            match self.peek() {
                Some(b')') => {
                    self.pos += 1;
                    return Ok(Value::List(items));
                }
                None => return Err(self.error("unterminated list")),
                Some(_) => items.push(self.value()?),
            }
        }
    }

    fn bytes(&mut self) -> Result<Value, ParseError> {
        self.pos += 1; // '['
        let mut out = Vec::new();
        loop {
            match self.peek() {
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::Bytes(out));
                }
                None => return Err(self.error("unterminated datum bytes")),
                Some(_) => {
                    let a = self.atom()?;
                    // Bytes are printed as signed or unsigned chars depending on the platform.
                    let n: i64 = a
                        .parse()
                        .map_err(|_| self.error("datum byte is not a number"))?;
                    out.push(n as u8);
                }
            }
        }
    }

    /// A bare token: runs until whitespace or a structural character, with
    /// backslash escaping the next byte (outToken's escaping).
    fn atom(&mut self) -> Result<String, ParseError> {
        self.skip_ws();
        let mut out = Vec::new();
        while let Some(&c) = self.src.get(self.pos) {
            match c {
                b'\\' => {
                    let Some(&n) = self.src.get(self.pos + 1) else {
                        return Err(self.error("dangling backslash"));
                    };
                    out.push(n);
                    self.pos += 2;
                }
                b' ' | b'\t' | b'\n' | b'\r' | b'(' | b')' | b'{' | b'}' | b'[' | b']' => break,
                _ => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
        if out.is_empty() {
            return Err(self.error("expected a token"));
        }
        String::from_utf8(out).map_err(|_| self.error("token is not UTF-8"))
    }

    fn quoted(&mut self) -> Result<String, ParseError> {
        self.pos += 1; // '"'
        let mut out = Vec::new();
        while let Some(&c) = self.src.get(self.pos) {
            match c {
                b'\\' => {
                    let Some(&n) = self.src.get(self.pos + 1) else {
                        return Err(self.error("dangling backslash"));
                    };
                    out.push(n);
                    self.pos += 2;
                }
                b'"' => {
                    self.pos += 1;
                    return String::from_utf8(out).map_err(|_| self.error("string is not UTF-8"));
                }
                _ => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
        Err(self.error("unterminated string"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nodes_lists_and_atoms() {
        let v = parse(r#"({ALIAS :aliasname p :colnames ("pk_post" "fk\"user")} <> (i 1 2) (b))"#)
            .unwrap();
        let l = v.as_list();
        assert_eq!(l.len(), 4);
        let n = l[0].as_node().unwrap();
        assert_eq!(n.tag, "ALIAS");
        assert_eq!(n.str("aliasname"), Some("p"));
        let cols: Vec<_> = n
            .list("colnames")
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert_eq!(cols, ["pk_post", "fk\"user"]);
        assert_eq!(l[1], Value::Null);
        assert_eq!(l[2], Value::IntList('i', vec![1, 2]));
        assert_eq!(l[3], Value::IntList('b', vec![]));
    }

    #[test]
    fn parses_const_datum_bytes() {
        let v = parse("{CONST :consttype 25 :constisnull false :constvalue 5 [ 20 0 0 0 120 ]}")
            .unwrap();
        let n = v.as_node().unwrap();
        assert_eq!(n.get("constvalue"), &Value::Bytes(vec![20, 0, 0, 0, 120]));
        assert_eq!(n.uint("consttype"), Some(25));
        assert!(!n.bool("constisnull"));
    }

    #[test]
    fn escaped_tokens_and_empty_fields() {
        let v = parse(r"{X :a foo\ bar :b :c 3}").unwrap();
        let n = v.as_node().unwrap();
        assert_eq!(n.str("a"), Some("foo bar"));
        assert_eq!(n.get("b"), &Value::Null);
        assert_eq!(n.int("c"), Some(3));
    }

    #[test]
    fn rejects_broken_text() {
        assert!(parse("{X :a (1 2}").is_err());
        assert!(parse("{X :a 1").is_err());
        assert!(parse("(1 2) trailing").is_err());
        assert!(parse("").is_err());
    }

    proptest::proptest! {
        /// The parser never panics, whatever it is fed.
        #[test]
        fn never_panics(s in "[ -~]{0,200}") {
            let _ = parse(&s);
        }
    }
}
