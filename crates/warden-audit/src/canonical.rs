//! A direct RFC 8785 (JCS) serializer for the writer's hot path.
//!
//! `serde_json_canonicalizer` buffers every member in its own allocation and
//! re-parses every key; this serializer writes straight into one output
//! buffer and, per object, only reorders byte ranges when the members were
//! not already emitted in canonical order. Output is byte-identical to
//! `serde_json_canonicalizer` (checked by differential tests); floats and
//! anything unusual (`serde_json` arbitrary-precision numbers or raw values)
//! are delegated to it.
//!
//! Canonical form: object members sorted by the UTF-16 code units of their
//! names, no insignificant whitespace, strings escaped minimally (`\"`, `\\`,
//! `\b \f \n \r \t`, other controls as `\u00xx`), integers in decimal, floats
//! as ECMAScript `Number.prototype.toString`.

use std::cmp::Ordering;
use std::fmt::Display;

use serde::ser::{self, Serialize};

/// `value` could not be serialised as RFC 8785 canonical JSON: a map key
/// that is not a string, a non-finite float, a duplicate member name, or a
/// failing `Serialize` implementation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot serialise as canonical JSON: {0}")]
pub struct CanonicalJsonError(pub String);

/// Serialises `value` as RFC 8785 canonical JSON, appending to `out` (on
/// error `out` is left as it was).
///
/// Byte-identical to `serde_json_canonicalizer`, several times faster. Note
/// that RFC 8785 numbers are IEEE doubles: integers beyond ±2^53 are rounded
/// (keep such values, e.g. 64-bit ids, as strings).
///
/// ```
/// let mut out = Vec::new();
/// warden_audit::to_canonical_json(&serde_json::json!({"b": 1, "a": [true, "x"]}), &mut out).unwrap();
/// assert_eq!(out, br#"{"a":[true,"x"],"b":1}"#);
/// ```
///
/// # Errors
/// [`CanonicalJsonError`].
pub fn to_canonical_json<T: Serialize>(
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), CanonicalJsonError> {
    Canonicalizer::new()
        .write(value, out)
        .map_err(CanonicalJsonError)
}

#[cfg(test)]
fn to_writer<T: Serialize>(value: &T, out: &mut Vec<u8>) -> Result<(), String> {
    Canonicalizer::new().write(value, out)
}

/// A reusable RFC 8785 serializer: [`to_canonical_json`] that keeps its
/// scratch buffers between calls, so steady-state serialisation does not
/// allocate (keep one per thread for hot paths).
#[derive(Default)]
pub struct Canonicalizer {
    members: Vec<Member>,
    keys: Vec<u8>,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for Canonicalizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Canonicalizer").finish_non_exhaustive()
    }
}

impl Canonicalizer {
    /// A canonicalizer with empty scratch buffers.
    #[must_use]
    pub fn new() -> Self {
        Self {
            members: Vec::new(),
            keys: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// As [`to_canonical_json`], reusing this canonicalizer's buffers.
    ///
    /// # Errors
    /// [`CanonicalJsonError`].
    pub fn encode<T: Serialize>(
        &mut self,
        value: &T,
        out: &mut Vec<u8>,
    ) -> Result<(), CanonicalJsonError> {
        self.write(value, out).map_err(CanonicalJsonError)
    }

    /// As [`Canonicalizer::encode`], with the error as a message.
    pub(crate) fn write<T: Serialize>(
        &mut self,
        value: &T,
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        let start = out.len();
        let mut ser = Canon {
            out,
            members: std::mem::take(&mut self.members),
            keys: std::mem::take(&mut self.keys),
            scratch: std::mem::take(&mut self.scratch),
        };
        let result = value.serialize(&mut ser);
        self.members = std::mem::take(&mut ser.members);
        self.keys = std::mem::take(&mut ser.keys);
        self.scratch = std::mem::take(&mut ser.scratch);
        self.members.clear();
        self.keys.clear();
        match result {
            Ok(()) => Ok(()),
            Err(Error::Fallback) => {
                out.truncate(start);
                serde_json_canonicalizer::to_writer(value, out).map_err(|e| e.to_string())
            }
            Err(Error::Custom(msg)) => {
                out.truncate(start);
                Err(msg)
            }
        }
    }
}

#[derive(Debug)]
enum Error {
    Custom(String),
    /// Hand the whole value to `serde_json_canonicalizer`.
    Fallback,
}

impl Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Custom(m) => f.write_str(m),
            Self::Fallback => f.write_str("unsupported by the fast canonicalizer"),
        }
    }
}

impl std::error::Error for Error {}

impl ser::Error for Error {
    fn custom<T: Display>(msg: T) -> Self {
        Self::Custom(msg.to_string())
    }
}

/// One object member: its unescaped name in `keys`, its bytes in `out`.
#[derive(Clone, Copy)]
struct Member {
    key_start: usize,
    key_end: usize,
    start: usize,
    end: usize,
    /// The name has no code point at or above U+E000, so byte order is
    /// UTF-16 order.
    simple: bool,
}

fn is_simple(key: &[u8]) -> bool {
    key.iter().all(|&x| x < 0xee)
}

struct Canon<'a> {
    out: &'a mut Vec<u8>,
    members: Vec<Member>,
    keys: Vec<u8>,
    scratch: Vec<u8>,
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Bytes that must be escaped in a JSON string: controls, `"` and `\`.
const NEEDS_ESCAPE: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t
};

/// Whether any of the 8 bytes in `w` needs escaping (a control byte, `"` or
/// `\\`). Never misses one; a false alarm only costs the byte-wise check.
fn word_needs_escape(w: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH != 0;
    let below_space = w.wrapping_sub(ONES * 0x20) & !w & HIGH != 0;
    below_space || has_zero(w ^ (ONES * u64::from(b'"'))) || has_zero(w ^ (ONES * u64::from(b'\\')))
}

fn write_escaped(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut plain = 0;
    let mut i = 0;
    while i < bytes.len() {
        // Skip clean text a word at a time (most strings need no escape).
        if let Some(chunk) = bytes.get(i..i + 8)
            && let Ok(word) = <[u8; 8]>::try_from(chunk)
            && !word_needs_escape(u64::from_le_bytes(word))
        {
            i += 8;
            continue;
        }
        let b = bytes[i];
        if NEEDS_ESCAPE[usize::from(b)] {
            out.extend_from_slice(&bytes[plain..i]);
            match b {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                0x08 => out.extend_from_slice(b"\\b"),
                0x0c => out.extend_from_slice(b"\\f"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                _ => {
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX[usize::from(b >> 4)]);
                    out.push(HEX[usize::from(b & 0xf)]);
                }
            }
            plain = i + 1;
        }
        i += 1;
    }
    out.extend_from_slice(&bytes[plain..]);
    out.push(b'"');
}

fn write_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + u8::try_from(v % 10).unwrap_or(0);
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

fn write_i64(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    write_u64(out, v.unsigned_abs());
}

/// Largest integer magnitude every IEEE double represents exactly (2^53).
/// RFC 8785 numbers are doubles: beyond this, integers are rounded and
/// printed as ECMAScript does, which the reference crate implements.
const MAX_EXACT: u64 = 1 << 53;

fn as_double<T: Serialize>(v: &T, out: &mut Vec<u8>) -> Result<(), Error> {
    serde_json_canonicalizer::to_writer(v, out).map_err(|e| Error::Custom(e.to_string()))
}

/// Orders member names by their UTF-16 code units (RFC 8785 §3.2.3).
fn utf16_cmp(a: &[u8], b: &[u8]) -> Ordering {
    match (std::str::from_utf8(a), std::str::from_utf8(b)) {
        (Ok(a), Ok(b)) => a.encode_utf16().cmp(b.encode_utf16()),
        _ => a.cmp(b),
    }
}

impl Canon<'_> {
    /// Closes an object opened at `open` whose members are `members[base..]`.
    fn finish_object(&mut self, open: usize, base: usize, keys_base: usize) -> Result<(), Error> {
        let members = &mut self.members[base..];
        let keys = &self.keys;
        let key = |m: &Member| &keys[m.key_start..m.key_end];
        // Below U+E000 (lead bytes < 0xEE) UTF-8 byte order, code point order
        // and UTF-16 order coincide; only otherwise decode.
        let cmp = |x: &Member, y: &Member| {
            if x.simple && y.simple {
                key(x).cmp(key(y))
            } else {
                utf16_cmp(key(x), key(y))
            }
        };
        let sorted = members
            .windows(2)
            .all(|w| cmp(&w[0], &w[1]) == Ordering::Less);
        if !sorted {
            members.sort_unstable_by(cmp);
            if members.windows(2).any(|w| key(&w[0]) == key(&w[1])) {
                return Err(Error::Custom("duplicate object member name".into()));
            }
            // Rewrite the members in order.
            self.scratch.clear();
            self.scratch.extend_from_slice(&self.out[open + 1..]);
            self.out.truncate(open + 1);
            let body = open + 1;
            for (i, m) in members.iter().enumerate() {
                if i > 0 {
                    self.out.push(b',');
                }
                self.out
                    .extend_from_slice(&self.scratch[m.start - body..m.end - body]);
            }
        }
        self.out.push(b'}');
        self.members.truncate(base);
        self.keys.truncate(keys_base);
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Close {
    /// `]`
    Array,
    /// `]}` (tuple variant)
    VariantArray,
    /// Sorted object.
    Object,
    /// Sorted object inside `{"Variant":…}`.
    VariantObject,
}

struct Compound<'b, 'a> {
    ser: &'b mut Canon<'a>,
    close: Close,
    first: bool,
    open: usize,
    base: usize,
    keys_base: usize,
    pending: Option<(usize, usize, usize)>,
}

impl Compound<'_, '_> {
    fn comma(&mut self) {
        if self.first {
            self.first = false;
        } else {
            self.ser.out.push(b',');
        }
    }

    fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), Error> {
        self.comma();
        let start = self.ser.out.len();
        write_escaped(self.ser.out, key);
        self.ser.out.push(b':');
        value.serialize(&mut *self.ser)?;
        let key_start = self.ser.keys.len();
        self.ser.keys.extend_from_slice(key.as_bytes());
        self.ser.members.push(Member {
            key_start,
            key_end: self.ser.keys.len(),
            start,
            end: self.ser.out.len(),
            simple: is_simple(key.as_bytes()),
        });
        Ok(())
    }

    fn end_compound(self) -> Result<(), Error> {
        match self.close {
            Close::Array => {
                self.ser.out.push(b']');
                Ok(())
            }
            Close::VariantArray => {
                self.ser.out.extend_from_slice(b"]}");
                Ok(())
            }
            Close::Object => self.ser.finish_object(self.open, self.base, self.keys_base),
            Close::VariantObject => {
                self.ser
                    .finish_object(self.open, self.base, self.keys_base)?;
                self.ser.out.push(b'}');
                Ok(())
            }
        }
    }
}

impl<'b, 'a> Canon<'a> {
    fn array(&'b mut self, close: Close) -> Compound<'b, 'a> {
        self.out.push(b'[');
        Compound {
            open: self.out.len() - 1,
            base: self.members.len(),
            keys_base: self.keys.len(),
            ser: self,
            close,
            first: true,
            pending: None,
        }
    }

    fn object(&'b mut self, close: Close) -> Compound<'b, 'a> {
        self.out.push(b'{');
        Compound {
            open: self.out.len() - 1,
            base: self.members.len(),
            keys_base: self.keys.len(),
            ser: self,
            close,
            first: true,
            pending: None,
        }
    }

    fn variant_open(&mut self, variant: &str) {
        self.out.push(b'{');
        write_escaped(self.out, variant);
        self.out.push(b':');
    }
}

impl<'b, 'a> ser::Serializer for &'b mut Canon<'a> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Compound<'b, 'a>;
    type SerializeTuple = Compound<'b, 'a>;
    type SerializeTupleStruct = Compound<'b, 'a>;
    type SerializeTupleVariant = Compound<'b, 'a>;
    type SerializeMap = Compound<'b, 'a>;
    type SerializeStruct = Compound<'b, 'a>;
    type SerializeStructVariant = Compound<'b, 'a>;

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.out
            .extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), Error> {
        write_i64(self.out, i64::from(v));
        Ok(())
    }
    fn serialize_i16(self, v: i16) -> Result<(), Error> {
        write_i64(self.out, i64::from(v));
        Ok(())
    }
    fn serialize_i32(self, v: i32) -> Result<(), Error> {
        write_i64(self.out, i64::from(v));
        Ok(())
    }
    fn serialize_i64(self, v: i64) -> Result<(), Error> {
        if v.unsigned_abs() <= MAX_EXACT {
            write_i64(self.out, v);
            Ok(())
        } else {
            as_double(&v, self.out)
        }
    }
    fn serialize_i128(self, v: i128) -> Result<(), Error> {
        if v.unsigned_abs() <= u128::from(MAX_EXACT) {
            write_i64(self.out, i64::try_from(v).unwrap_or(0));
            Ok(())
        } else {
            as_double(&v, self.out)
        }
    }
    fn serialize_u8(self, v: u8) -> Result<(), Error> {
        write_u64(self.out, u64::from(v));
        Ok(())
    }
    fn serialize_u16(self, v: u16) -> Result<(), Error> {
        write_u64(self.out, u64::from(v));
        Ok(())
    }
    fn serialize_u32(self, v: u32) -> Result<(), Error> {
        write_u64(self.out, u64::from(v));
        Ok(())
    }
    fn serialize_u64(self, v: u64) -> Result<(), Error> {
        if v <= MAX_EXACT {
            write_u64(self.out, v);
            Ok(())
        } else {
            as_double(&v, self.out)
        }
    }
    fn serialize_u128(self, v: u128) -> Result<(), Error> {
        if v <= u128::from(MAX_EXACT) {
            write_u64(self.out, u64::try_from(v).unwrap_or(0));
            Ok(())
        } else {
            as_double(&v, self.out)
        }
    }
    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        self.serialize_f64(f64::from(v))
    }
    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        // ECMAScript number formatting: delegate to the reference crate.
        serde_json_canonicalizer::to_writer(&v, self.out).map_err(|e| Error::Custom(e.to_string()))
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        let mut buf = [0u8; 4];
        write_escaped(self.out, v.encode_utf8(&mut buf));
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), Error> {
        write_escaped(self.out, v);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Error> {
        self.out.push(b'[');
        for (i, b) in v.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            write_u64(self.out, u64::from(*b));
        }
        self.out.push(b']');
        Ok(())
    }
    fn serialize_none(self) -> Result<(), Error> {
        self.serialize_unit()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Error> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Error> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        write_escaped(self.out, variant);
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.variant_open(variant);
        value.serialize(&mut *self)?;
        self.out.push(b'}');
        Ok(())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Compound<'b, 'a>, Error> {
        Ok(self.array(Close::Array))
    }
    fn serialize_tuple(self, _len: usize) -> Result<Compound<'b, 'a>, Error> {
        Ok(self.array(Close::Array))
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Compound<'b, 'a>, Error> {
        Ok(self.array(Close::Array))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'b, 'a>, Error> {
        self.variant_open(variant);
        Ok(self.array(Close::VariantArray))
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Compound<'b, 'a>, Error> {
        Ok(self.object(Close::Object))
    }
    fn serialize_struct(self, name: &'static str, _len: usize) -> Result<Compound<'b, 'a>, Error> {
        if name.starts_with("$serde_json::private::") {
            // Arbitrary-precision numbers and raw values.
            return Err(Error::Fallback);
        }
        Ok(self.object(Close::Object))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Compound<'b, 'a>, Error> {
        self.variant_open(variant);
        Ok(self.object(Close::VariantObject))
    }
}

impl ser::SerializeSeq for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.comma();
        value.serialize(&mut *self.ser)
    }
    fn end(self) -> Result<(), Error> {
        self.end_compound()
    }
}

impl ser::SerializeTuple for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result<(), Error> {
        self.end_compound()
    }
}

impl ser::SerializeTupleStruct for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result<(), Error> {
        self.end_compound()
    }
}

impl ser::SerializeTupleVariant for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result<(), Error> {
        self.end_compound()
    }
}

impl ser::SerializeStruct for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.field(key, value)
    }
    fn end(self) -> Result<(), Error> {
        self.end_compound()
    }
}

impl ser::SerializeStructVariant for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.field(key, value)
    }
    fn end(self) -> Result<(), Error> {
        self.end_compound()
    }
}

impl ser::SerializeMap for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        self.comma();
        let start = self.ser.out.len();
        let key_start = self.ser.keys.len();
        key.serialize(KeySerializer {
            keys: &mut self.ser.keys,
        })?;
        let key_end = self.ser.keys.len();
        let name = std::str::from_utf8(&self.ser.keys[key_start..key_end])
            .map_err(|_| Error::Custom("object member name is not UTF-8".into()))?;
        write_escaped(self.ser.out, name);
        self.ser.out.push(b':');
        self.pending = Some((start, key_start, key_end));
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        let Some((start, key_start, key_end)) = self.pending.take() else {
            return Err(Error::Custom("map value without a key".into()));
        };
        value.serialize(&mut *self.ser)?;
        let simple = is_simple(&self.ser.keys[key_start..key_end]);
        self.ser.members.push(Member {
            key_start,
            key_end,
            start,
            end: self.ser.out.len(),
            simple,
        });
        Ok(())
    }
    fn end(self) -> Result<(), Error> {
        self.end_compound()
    }
}

/// Writes a map key's unescaped text into the key arena. Like `serde_json`,
/// accepts strings, chars and integers (as their decimal text).
struct KeySerializer<'k> {
    keys: &'k mut Vec<u8>,
}

fn key_error() -> Error {
    Error::Custom("key must be a string".into())
}

impl ser::Serializer for KeySerializer<'_> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = ser::Impossible<(), Error>;
    type SerializeTuple = ser::Impossible<(), Error>;
    type SerializeTupleStruct = ser::Impossible<(), Error>;
    type SerializeTupleVariant = ser::Impossible<(), Error>;
    type SerializeMap = ser::Impossible<(), Error>;
    type SerializeStruct = ser::Impossible<(), Error>;
    type SerializeStructVariant = ser::Impossible<(), Error>;

    fn serialize_str(self, v: &str) -> Result<(), Error> {
        self.keys.extend_from_slice(v.as_bytes());
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        let mut buf = [0u8; 4];
        self.keys
            .extend_from_slice(v.encode_utf8(&mut buf).as_bytes());
        Ok(())
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_i8(self, v: i8) -> Result<(), Error> {
        write_i64(self.keys, i64::from(v));
        Ok(())
    }
    fn serialize_i16(self, v: i16) -> Result<(), Error> {
        write_i64(self.keys, i64::from(v));
        Ok(())
    }
    fn serialize_i32(self, v: i32) -> Result<(), Error> {
        write_i64(self.keys, i64::from(v));
        Ok(())
    }
    fn serialize_i64(self, v: i64) -> Result<(), Error> {
        if v.unsigned_abs() > MAX_EXACT {
            return Err(Error::Fallback);
        }
        write_i64(self.keys, v);
        Ok(())
    }
    fn serialize_u8(self, v: u8) -> Result<(), Error> {
        write_u64(self.keys, u64::from(v));
        Ok(())
    }
    fn serialize_u16(self, v: u16) -> Result<(), Error> {
        write_u64(self.keys, u64::from(v));
        Ok(())
    }
    fn serialize_u32(self, v: u32) -> Result<(), Error> {
        write_u64(self.keys, u64::from(v));
        Ok(())
    }
    fn serialize_u64(self, v: u64) -> Result<(), Error> {
        if v > MAX_EXACT {
            return Err(Error::Fallback);
        }
        write_u64(self.keys, v);
        Ok(())
    }
    fn serialize_bool(self, _v: bool) -> Result<(), Error> {
        Err(Error::Fallback)
    }
    fn serialize_f32(self, _v: f32) -> Result<(), Error> {
        Err(Error::Fallback)
    }
    fn serialize_f64(self, _v: f64) -> Result<(), Error> {
        Err(Error::Fallback)
    }
    fn serialize_i128(self, _v: i128) -> Result<(), Error> {
        Err(Error::Fallback)
    }
    fn serialize_u128(self, _v: u128) -> Result<(), Error> {
        Err(Error::Fallback)
    }
    fn serialize_bytes(self, _v: &[u8]) -> Result<(), Error> {
        Err(key_error())
    }
    fn serialize_none(self) -> Result<(), Error> {
        Err(key_error())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _value: &T) -> Result<(), Error> {
        Err(key_error())
    }
    fn serialize_unit(self) -> Result<(), Error> {
        Err(key_error())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Error> {
        Err(key_error())
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<(), Error> {
        Err(key_error())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, Error> {
        Err(key_error())
    }
    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, Error> {
        Err(key_error())
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, Error> {
        Err(key_error())
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        Err(key_error())
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, Error> {
        Err(key_error())
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStruct, Error> {
        Err(key_error())
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        Err(key_error())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use serde::Serialize;
    use serde_json::json;

    #[test]
    fn the_word_check_flags_exactly_the_bytes_that_need_escaping() {
        for b in 0..=255u8 {
            for pos in 0..8 {
                let mut word = *b"abcdefgh";
                word[pos] = b;
                assert_eq!(
                    word_needs_escape(u64::from_le_bytes(word)),
                    NEEDS_ESCAPE[usize::from(b)],
                    "byte {b:#04x} at {pos}"
                );
            }
        }
        // Escapes at every offset of strings longer than a word, next to
        // multi-byte characters.
        for len in 0..20 {
            for pos in 0..len {
                for special in ['"', '\\', '\u{1}', '\n', 'é', '😀'] {
                    let s: String = (0..len)
                        .map(|i| if i == pos { special } else { 'x' })
                        .collect();
                    same(&s);
                }
            }
        }
    }

    fn both<T: Serialize>(v: &T) -> (Result<String, String>, Result<String, String>) {
        let mut out = Vec::new();
        let fast = to_writer(v, &mut out).map(|()| String::from_utf8(out).unwrap());
        let reference = serde_json_canonicalizer::to_string(v).map_err(|e| e.to_string());
        (fast, reference)
    }

    fn same<T: Serialize>(v: &T) {
        let (fast, reference) = both(v);
        assert_eq!(fast, Ok(reference.unwrap()));
    }

    #[test]
    fn rfc8785_examples() {
        // RFC 8785 §3.2.2 and §3.2.3 examples.
        let v: serde_json::Value = serde_json::from_str(
            r#"{"numbers":[333333333.33333329,1E30,4.50,2e-3,0.000000000000000000000000001],
               "string":"\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
               "literals":[null,true,false]}"#,
        )
        .unwrap();
        let mut out = Vec::new();
        to_writer(&v, &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
        );
        let v: serde_json::Value = serde_json::from_str(
            r#"{"\u20ac":"Euro Sign","\r":"Carriage Return","\ufb33":"Hebrew Letter Dalet With Dagesh",
               "1":"One","\ud83d\ude00":"Emoji: Grinning Face","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis"}"#,
        )
        .unwrap();
        same(&v);
        let mut out = Vec::new();
        to_writer(&v, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let order: Vec<&str> = [
            "\\r",
            "1",
            "\u{80}",
            "\u{f6}",
            "\u{20ac}",
            "\u{1f600}",
            "\u{fb33}",
        ]
        .to_vec();
        let mut last = 0;
        for k in order {
            let pos = text.find(&format!("\"{k}\":")).unwrap();
            assert!(pos >= last, "{k} out of order in {text}");
            last = pos;
        }
    }

    #[derive(Serialize)]
    #[serde(tag = "type", rename_all = "snake_case")]
    enum Event {
        Decision {
            zeta: u64,
            alpha: Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            skipped: Option<u8>,
            nested: std::collections::HashMap<String, Vec<i64>>,
            cost: f64,
            unit: (),
            tuple: (u8, char),
            verdict: Verdict,
        },
    }

    #[derive(Serialize)]
    #[serde(rename_all = "snake_case")]
    enum Verdict {
        Allow,
        Transform { redact: Vec<String> },
        Pair(u8, u8),
        Wrapped(String),
    }

    #[test]
    fn structs_enums_and_maps() {
        let mut nested = std::collections::HashMap::new();
        for k in ["b", "a", "é", "Z", "10", "9"] {
            nested.insert(k.to_string(), vec![-1, i64::MIN, i64::MAX]);
        }
        for verdict in [
            Verdict::Allow,
            Verdict::Transform {
                redact: vec!["x".into()],
            },
            Verdict::Pair(1, 2),
            Verdict::Wrapped("w\"\n".into()),
        ] {
            same(&Event::Decision {
                zeta: u64::MAX,
                alpha: None,
                skipped: None,
                nested: nested.clone(),
                cost: 0.1 + 0.2,
                unit: (),
                tuple: (7, '\u{1}'),
                verdict,
            });
        }
        let mut int_keys = std::collections::BTreeMap::new();
        int_keys.insert(10u32, "ten");
        int_keys.insert(9u32, "nine");
        same(&int_keys);
        let mut big_keys = std::collections::BTreeMap::new();
        big_keys.insert(u64::MAX, 1);
        big_keys.insert(7, 2);
        same(&big_keys);
        same(&json!({"a": [], "b": {}, "c": [{}], "": 0, "d": -0.0, "e": 1e21, "f": 5e-324}));
    }

    #[test]
    fn errors_match() {
        let (fast, reference) = both(&f64::NAN);
        assert!(fast.is_err() && reference.is_err());
        let mut bad = std::collections::BTreeMap::new();
        bad.insert(vec![1u8], 1);
        let (fast, reference) = both(&bad);
        assert!(fast.is_err() && reference.is_err());
    }

    #[derive(Serialize)]
    struct Dup {
        a: u8,
        #[serde(flatten)]
        more: std::collections::BTreeMap<String, u8>,
    }

    #[test]
    fn duplicate_members_are_rejected() {
        let mut more = std::collections::BTreeMap::new();
        more.insert("a".to_string(), 2);
        let mut out = Vec::new();
        assert!(to_writer(&Dup { a: 1, more }, &mut out).is_err());
    }

    #[test]
    fn reuse_keeps_no_state() {
        let mut c = Canonicalizer::new();
        for i in 0..3 {
            let mut out = Vec::new();
            c.write(&json!({"z": i, "a": {"y": 1, "b": 2}}), &mut out)
                .unwrap();
            assert_eq!(
                String::from_utf8(out).unwrap(),
                format!(r#"{{"a":{{"b":2,"y":1}},"z":{i}}}"#)
            );
        }
    }

    mod differential {
        use super::*;
        use proptest::prelude::*;

        fn any_string() -> impl Strategy<Value = String> {
            prop_oneof![
                "[a-z]{0,6}",
                "\\PC{0,8}",
                proptest::collection::vec(
                    prop_oneof![
                        Just('\u{0}'),
                        Just('\u{1f}'),
                        Just('"'),
                        Just('\\'),
                        Just('\u{7f}'),
                        Just('\u{e000}'),
                        Just('\u{ffff}'),
                        Just('\u{10000}'),
                        Just('\u{1f600}'),
                        Just('\u{2028}'),
                        any::<char>(),
                    ],
                    0..6
                )
                .prop_map(|v| v.into_iter().collect()),
            ]
        }

        fn any_json() -> impl Strategy<Value = serde_json::Value> {
            let leaf = prop_oneof![
                Just(serde_json::Value::Null),
                any::<bool>().prop_map(serde_json::Value::from),
                any::<i64>().prop_map(serde_json::Value::from),
                any::<u64>().prop_map(serde_json::Value::from),
                any::<f64>()
                    .prop_filter("finite", |f| f.is_finite())
                    .prop_map(serde_json::Value::from),
                any_string().prop_map(serde_json::Value::from),
            ];
            leaf.prop_recursive(4, 64, 8, |inner| {
                prop_oneof![
                    proptest::collection::vec(inner.clone(), 0..6)
                        .prop_map(serde_json::Value::from),
                    proptest::collection::btree_map(any_string(), inner, 0..8)
                        .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
                ]
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(512))]
            #[test]
            fn matches_reference(v in any_json()) {
                let (fast, reference) = both(&v);
                prop_assert_eq!(fast, Ok(reference.unwrap()));
            }

            /// A struct whose fields come out of order, with arbitrary values.
            #[test]
            fn unordered_struct_matches_reference(a in any_json(), b in any_string(), c in any::<i32>()) {
                #[derive(Serialize)]
                struct S { zz: serde_json::Value, b: String, aa: i32, m: std::collections::HashMap<String, i32> }
                let mut m = std::collections::HashMap::new();
                m.insert(b.clone(), c);
                m.insert("\u{fb33}".into(), 1);
                m.insert("\u{1f600}".into(), 2);
                let (fast, reference) = both(&S { zz: a, b, aa: c, m });
                prop_assert_eq!(fast, Ok(reference.unwrap()));
            }
        }
    }
}
