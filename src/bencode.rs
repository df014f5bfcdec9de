//! Bencode (BEP 3): the encoding of .torrent files, tracker responses and extension messages.
//!
//! Four kinds of value: integers `i42e`, byte strings `5:hello`, lists `l...e` and dictionaries
//! `d...e` whose keys are byte strings. This module is a small, strict, zero-dependency decoder
//! and encoder over a generic [`Value`]; typed structures (the metainfo, tracker replies) read
//! their fields off a [`Value`], so errors name the field and carry byte offsets, and nesting is
//! capped (serde_bencode has no depth limit: a hostile file could overflow the stack).
//!
//! Contract: [`decode`] and [`decode_prefix`] never panic, never recurse deeper than
//! [`MAX_DEPTH`], and never allocate more than the input's length (a string's length prefix is
//! checked against the bytes that are actually there before anything is allocated).
//!
//! The info hash of a torrent is the SHA-1 of the *raw* bytes of its `info` dictionary as they
//! appear in the file, never of a re-encoding (a re-encoding can differ: unsorted keys, extra
//! fields): [`dict_value_span`] finds those raw bytes.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

/// How deep lists and dictionaries may nest before we refuse the input.
pub const MAX_DEPTH: usize = 256;

/// A decoded bencode value. Dictionary keys are raw bytes, kept sorted (as BEP 3 requires of
/// encoders), so [`encode`] of a decoded value is canonical.
#[derive(Clone, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Dict(BTreeMap<Vec<u8>, Value>),
}

/// What went wrong, and at which byte offset of the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BencodeError {
    #[error("bencode: unexpected end of input at byte {offset} (inside {inside})")]
    Eof { offset: usize, inside: &'static str },
    #[error("bencode: unexpected byte {found:?} at byte {offset}: expected {expected}")]
    Unexpected {
        offset: usize,
        found: char,
        expected: &'static str,
    },
    #[error("bencode: invalid integer at byte {offset}: {why}")]
    BadInt { offset: usize, why: &'static str },
    #[error("bencode: string at byte {offset} claims {len} bytes but only {available} remain")]
    StringTooLong {
        offset: usize,
        len: u64,
        available: usize,
    },
    #[error("bencode: nesting deeper than {MAX_DEPTH} levels at byte {offset}")]
    TooDeep { offset: usize },
    #[error("bencode: dictionary key at byte {offset} is not a byte string")]
    KeyNotString { offset: usize },
    #[error("bencode: {count} trailing byte(s) after the value, starting at byte {offset}")]
    Trailing { offset: usize, count: usize },
}

/// Decodes exactly one value that fills the whole input.
pub fn decode(buf: &[u8]) -> Result<Value, BencodeError> {
    let (v, used) = decode_prefix(buf)?;
    if used != buf.len() {
        return Err(BencodeError::Trailing {
            offset: used,
            count: buf.len() - used,
        });
    }
    Ok(v)
}

/// Decodes one value at the start of `buf` and returns it with the number of bytes it used.
/// ut_metadata messages (BEP 9) carry raw piece data right after a bencoded dictionary.
pub fn decode_prefix(buf: &[u8]) -> Result<(Value, usize), BencodeError> {
    let mut p = Parser { buf, pos: 0 };
    let v = p.value(0)?;
    Ok((v, p.pos))
}

/// Returns the byte range of the value stored under `key` in the top-level dictionary of `buf`,
/// without decoding it into a [`Value`]. Used for the info hash: `sha1(&buf[range])`.
pub fn dict_value_span(buf: &[u8], key: &[u8]) -> Result<Option<Range<usize>>, BencodeError> {
    let mut p = Parser { buf, pos: 0 };
    p.expect(b'd', "a dictionary")?;
    loop {
        match p.peek("dictionary")? {
            b'e' => return Ok(None),
            b'0'..=b'9' => {}
            _ => return Err(BencodeError::KeyNotString { offset: p.pos }),
        }
        let k = p.bytes()?;
        let start = p.pos;
        p.skip(1)?;
        if k == key {
            return Ok(Some(start..p.pos));
        }
    }
}

struct Parser<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self, inside: &'static str) -> Result<u8, BencodeError> {
        self.buf.get(self.pos).copied().ok_or(BencodeError::Eof {
            offset: self.pos,
            inside,
        })
    }

    fn expect(&mut self, b: u8, expected: &'static str) -> Result<(), BencodeError> {
        let found = self.peek(expected)?;
        if found != b {
            return Err(BencodeError::Unexpected {
                offset: self.pos,
                found: found as char,
                expected,
            });
        }
        self.pos += 1;
        Ok(())
    }

    fn value(&mut self, depth: usize) -> Result<Value, BencodeError> {
        if depth >= MAX_DEPTH {
            return Err(BencodeError::TooDeep { offset: self.pos });
        }
        match self.peek("a value")? {
            b'i' => Ok(Value::Int(self.int()?)),
            b'0'..=b'9' => Ok(Value::Bytes(self.bytes()?.to_vec())),
            b'l' => {
                self.pos += 1;
                let mut items = Vec::new();
                while self.peek("a list")? != b'e' {
                    items.push(self.value(depth + 1)?);
                }
                self.pos += 1;
                Ok(Value::List(items))
            }
            b'd' => {
                self.pos += 1;
                let mut map = BTreeMap::new();
                loop {
                    match self.peek("a dictionary")? {
                        b'e' => break,
                        b'0'..=b'9' => {}
                        _ => return Err(BencodeError::KeyNotString { offset: self.pos }),
                    }
                    let k = self.bytes()?.to_vec();
                    let v = self.value(depth + 1)?;
                    map.insert(k, v);
                }
                self.pos += 1;
                Ok(Value::Dict(map))
            }
            other => Err(BencodeError::Unexpected {
                offset: self.pos,
                found: other as char,
                expected: "'i', 'l', 'd' or a digit",
            }),
        }
    }

    /// Skips one value without building it (used to find raw spans). Depth-limited too.
    fn skip(&mut self, depth: usize) -> Result<(), BencodeError> {
        if depth >= MAX_DEPTH {
            return Err(BencodeError::TooDeep { offset: self.pos });
        }
        match self.peek("a value")? {
            b'i' => {
                self.int()?;
            }
            b'0'..=b'9' => {
                self.bytes()?;
            }
            b'l' | b'd' => {
                let is_dict = self.buf[self.pos] == b'd';
                self.pos += 1;
                while self.peek("a list or dictionary")? != b'e' {
                    if is_dict {
                        if !self.buf[self.pos].is_ascii_digit() {
                            return Err(BencodeError::KeyNotString { offset: self.pos });
                        }
                        self.bytes()?;
                    }
                    self.skip(depth + 1)?;
                }
                self.pos += 1;
            }
            other => {
                return Err(BencodeError::Unexpected {
                    offset: self.pos,
                    found: other as char,
                    expected: "'i', 'l', 'd' or a digit",
                })
            }
        }
        Ok(())
    }

    fn int(&mut self) -> Result<i64, BencodeError> {
        let start = self.pos;
        self.expect(b'i', "an integer")?;
        let end = self.buf[self.pos..]
            .iter()
            .position(|&b| b == b'e')
            .map(|i| self.pos + i)
            .ok_or(BencodeError::Eof {
                offset: self.buf.len(),
                inside: "an integer",
            })?;
        let digits = &self.buf[self.pos..end];
        let bad = |why| BencodeError::BadInt { offset: start, why };
        let (neg, mag) = match digits {
            [b'-', rest @ ..] => (true, rest),
            _ => (false, digits),
        };
        if mag.is_empty() {
            return Err(bad("no digits"));
        }
        if !mag.iter().all(u8::is_ascii_digit) {
            return Err(bad("not a decimal number"));
        }
        if mag.len() > 1 && mag[0] == b'0' {
            return Err(bad("leading zero"));
        }
        if neg && mag == b"0" {
            return Err(bad("negative zero"));
        }
        let mut n: i64 = 0;
        for &d in mag {
            let digit = i64::from(d - b'0');
            n = n
                .checked_mul(10)
                .and_then(|n| {
                    if neg {
                        n.checked_sub(digit)
                    } else {
                        n.checked_add(digit)
                    }
                })
                .ok_or(bad("does not fit in 64 bits"))?;
        }
        self.pos = end + 1;
        Ok(n)
    }

    fn bytes(&mut self) -> Result<&'a [u8], BencodeError> {
        let start = self.pos;
        let mut len: u64 = 0;
        let mut digits = 0;
        loop {
            let b = self.peek("a string length")?;
            match b {
                b'0'..=b'9' => {
                    if digits > 0 && len == 0 {
                        return Err(BencodeError::BadInt {
                            offset: start,
                            why: "string length with a leading zero",
                        });
                    }
                    len = len
                        .checked_mul(10)
                        .and_then(|l| l.checked_add(u64::from(b - b'0')))
                        .ok_or(BencodeError::BadInt {
                            offset: start,
                            why: "string length does not fit in 64 bits",
                        })?;
                    digits += 1;
                    self.pos += 1;
                }
                b':' if digits > 0 => {
                    self.pos += 1;
                    break;
                }
                other => {
                    return Err(BencodeError::Unexpected {
                        offset: self.pos,
                        found: other as char,
                        expected: "a digit or ':' in a string length",
                    })
                }
            }
        }
        let available = self.buf.len() - self.pos;
        if len > available as u64 {
            return Err(BencodeError::StringTooLong {
                offset: start,
                len,
                available,
            });
        }
        let s = &self.buf[self.pos..self.pos + len as usize];
        self.pos += len as usize;
        Ok(s)
    }
}

/// Encodes a value (dictionary keys come out sorted, as BEP 3 requires).
pub fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    v.encode_into(&mut out);
    out
}

impl Value {
    /// Appends the encoding of `self` to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Value::Int(n) => {
                out.push(b'i');
                out.extend_from_slice(n.to_string().as_bytes());
                out.push(b'e');
            }
            Value::Bytes(b) => encode_bytes(b, out),
            Value::List(items) => {
                out.push(b'l');
                for i in items {
                    i.encode_into(out);
                }
                out.push(b'e');
            }
            Value::Dict(map) => {
                out.push(b'd');
                for (k, v) in map {
                    encode_bytes(k, out);
                    v.encode_into(out);
                }
                out.push(b'e');
            }
        }
    }

    /// Encodes `self` into a new buffer.
    pub fn encode(&self) -> Vec<u8> {
        encode(self)
    }

    /// A byte-string value from anything byte-like.
    pub fn bytes(b: impl AsRef<[u8]>) -> Value {
        Value::Bytes(b.as_ref().to_vec())
    }

    /// Builds a dictionary from `(key, value)` pairs.
    pub fn dict<K: AsRef<[u8]>>(pairs: impl IntoIterator<Item = (K, Value)>) -> Value {
        Value::Dict(
            pairs
                .into_iter()
                .map(|(k, v)| (k.as_ref().to_vec(), v))
                .collect(),
        )
    }

    /// Looks up `key` when `self` is a dictionary.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_dict()?.get(key.as_bytes())
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(*n),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The byte string as UTF-8 text, if it is valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(self.as_bytes()?).ok()
    }

    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    pub fn as_dict(&self) -> Option<&BTreeMap<Vec<u8>, Value>> {
        match self {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// The value as JSON, the way `bt-trace decode` prints it. Byte strings that are valid
    /// UTF-8 become JSON strings; other byte strings (SHA-1 piece hashes, compact peer lists)
    /// become JSON strings too, with each invalid byte replaced by U+FFFD, as CodeCrafters
    /// solutions print them. Use [`Value::to_json_hex`] to see such bytes exactly.
    pub fn to_json(&self) -> serde_json::Value {
        self.to_json_with(false)
    }

    /// Like [`Value::to_json`], but byte strings that are not valid UTF-8 become
    /// `"<hex:0a1b…>"` strings, so no byte is lost.
    pub fn to_json_hex(&self) -> serde_json::Value {
        self.to_json_with(true)
    }

    fn to_json_with(&self, hex_binary: bool) -> serde_json::Value {
        use serde_json::Value as J;
        let text = |b: &[u8]| match std::str::from_utf8(b) {
            Ok(s) => s.to_string(),
            Err(_) if hex_binary => format!("<hex:{}>", hex::encode(b)),
            Err(_) => String::from_utf8_lossy(b).into_owned(),
        };
        match self {
            Value::Int(n) => J::from(*n),
            Value::Bytes(b) => J::String(text(b)),
            Value::List(items) => {
                J::Array(items.iter().map(|v| v.to_json_with(hex_binary)).collect())
            }
            Value::Dict(map) => J::Object(
                map.iter()
                    .map(|(k, v)| (text(k), v.to_json_with(hex_binary)))
                    .collect(),
            ),
        }
    }

    /// Converts JSON to bencode (`bt-trace encode`): integers, strings, arrays and objects.
    /// Floats, booleans and null have no bencode form and are refused.
    pub fn from_json(j: &serde_json::Value) -> Result<Value, String> {
        use serde_json::Value as J;
        Ok(match j {
            J::Number(n) => Value::Int(
                n.as_i64()
                    .ok_or_else(|| format!("bencode has only 64-bit integers, not {n}"))?,
            ),
            J::String(s) => Value::Bytes(s.as_bytes().to_vec()),
            J::Array(a) => Value::List(a.iter().map(Value::from_json).collect::<Result<_, _>>()?),
            J::Object(o) => Value::Dict(
                o.iter()
                    .map(|(k, v)| Ok((k.as_bytes().to_vec(), Value::from_json(v)?)))
                    .collect::<Result<_, String>>()?,
            ),
            J::Bool(b) => return Err(format!("bencode has no booleans (found {b})")),
            J::Null => return Err("bencode has no null".into()),
        })
    }
}

fn encode_bytes(b: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(b);
}

/// Debug shows byte strings as text when they are printable, as hex otherwise.
impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(n) => write!(f, "{n}"),
            Value::Bytes(b) => match std::str::from_utf8(b) {
                Ok(s) if !s.chars().any(char::is_control) => write!(f, "{s:?}"),
                _ => write!(f, "<{}>", hex::encode(b)),
            },
            Value::List(l) => f.debug_list().entries(l).finish(),
            Value::Dict(d) => f
                .debug_map()
                .entries(d.iter().map(|(k, v)| (Value::Bytes(k.clone()), v)))
                .finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn json(s: &str) -> String {
        decode(s.as_bytes()).unwrap().to_json().to_string()
    }

    #[test]
    fn codecrafters_examples() {
        assert_eq!(json("5:hello"), r#""hello""#);
        assert_eq!(json("i-52e"), "-52");
        assert_eq!(json("i4294967300e"), "4294967300");
        assert_eq!(json("lli4eei5ee"), "[[4],5]");
        assert_eq!(json("d3:foo3:bare"), r#"{"foo":"bar"}"#);
        assert_eq!(json("le"), "[]");
        assert_eq!(json("de"), "{}");
        assert_eq!(json("0:"), r#""""#);
        assert_eq!(
            json("d3:foo3:bar5:helloi52ee"),
            r#"{"foo":"bar","hello":52}"#
        );
    }

    #[test]
    fn extreme_integers() {
        assert_eq!(
            decode(b"i9223372036854775807e").unwrap(),
            Value::Int(i64::MAX)
        );
        assert_eq!(
            decode(b"i-9223372036854775808e").unwrap(),
            Value::Int(i64::MIN)
        );
        assert!(matches!(
            decode(b"i9223372036854775808e"),
            Err(BencodeError::BadInt { .. })
        ));
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            &b""[..],
            b"i",
            b"ie",
            b"i-e",
            b"i-0e",
            b"i03e",
            b"i1x2e",
            b"5:abc",
            b"l",
            b"d3:fooe",
            b"di1ei2ee",
            b"x",
            b"03:abc",
            b"i1ei2e",
            b"99999999999999999999999:a",
        ] {
            assert!(
                decode(bad).is_err(),
                "{:?} should fail",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn error_messages_say_where() {
        let e = decode(b"l5:abe").unwrap_err();
        assert_eq!(
            e.to_string(),
            "bencode: string at byte 1 claims 5 bytes but only 3 remain"
        );
        let e = decode(b"i1ee").unwrap_err();
        assert_eq!(
            e,
            BencodeError::Trailing {
                offset: 3,
                count: 1
            }
        );
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let mut deep = vec![b'l'; 100_000];
        deep.extend(vec![b'e'; 100_000]);
        assert!(matches!(decode(&deep), Err(BencodeError::TooDeep { .. })));
        let mut d = b"d4:info".to_vec();
        d.extend(&deep);
        d.push(b'e');
        assert!(matches!(
            dict_value_span(&d, b"info"),
            Err(BencodeError::TooDeep { .. })
        ));
        let ok = format!("{}{}", "l".repeat(MAX_DEPTH - 1), "e".repeat(MAX_DEPTH - 1));
        assert!(decode(ok.as_bytes()).is_ok());
    }

    #[test]
    fn raw_span_of_info_keeps_original_bytes() {
        // keys deliberately unsorted inside info: a re-encoding would differ
        let t = b"d8:announce3:url4:infod4:name1:x6:lengthi5eee";
        let span = dict_value_span(t, b"info").unwrap().unwrap();
        assert_eq!(&t[span], b"d4:name1:x6:lengthi5ee");
        assert_eq!(dict_value_span(t, b"nope").unwrap(), None);
    }

    #[test]
    fn prefix_leaves_trailing_data() {
        let (v, n) = decode_prefix(b"d8:msg_typei1e5:piecei0eeRAWDATA").unwrap();
        assert_eq!(n, 25);
        assert_eq!(v.get("piece").and_then(Value::as_int), Some(0));
    }

    #[test]
    fn json_round_trip_and_binary() {
        let v = decode(b"d1:ai1e1:bl1:xi-2eee").unwrap();
        assert_eq!(Value::from_json(&v.to_json()).unwrap(), v);
        let bin = Value::Bytes(vec![0xff, 0x00, b'a']);
        assert_eq!(bin.to_json_hex().to_string(), r#""<hex:ff0061>""#);
        assert_eq!(bin.to_json().to_string(), "\"\u{fffd}\\u0000a\"");
        assert!(Value::from_json(&serde_json::json!(1.5)).is_err());
        assert!(Value::from_json(&serde_json::json!(null)).is_err());
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(Value::Int),
            proptest::collection::vec(any::<u8>(), 0..20).prop_map(Value::Bytes),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..8).prop_map(Value::List),
                proptest::collection::btree_map(
                    proptest::collection::vec(any::<u8>(), 0..8),
                    inner,
                    0..8
                )
                .prop_map(Value::Dict),
            ]
        })
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(v in arb_value()) {
            prop_assert_eq!(decode(&encode(&v)).unwrap(), v);
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&b);
            let _ = dict_value_span(&b, b"info");
        }

        #[test]
        fn bencode_like_bytes_never_panic(s in "[ilde0-9:a-c-]{0,64}") {
            let _ = decode(s.as_bytes());
            let _ = dict_value_span(s.as_bytes(), b"a");
        }
    }
}
