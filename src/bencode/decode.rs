use super::value::{Dict, Kind, Value};

/// Bounds on what one decode may build. The input length already bounds the
/// work, but an empty list costs two input bytes and a whole `Value`, so the
/// number of values is capped separately.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Deepest nesting of lists and dictionaries accepted.
    pub max_depth: usize,
    /// Most values (of any kind) one decode may produce.
    pub max_values: usize,
}

impl Limits {
    /// Generous enough for torrents of millions of files, small enough that a
    /// hostile file cannot exhaust memory.
    pub const DEFAULT: Limits = Limits {
        max_depth: 64,
        max_values: 16_000_000,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bencode: {kind} at byte {offset}")]
pub struct DecodeError {
    pub offset: usize,
    pub kind: DecodeErrorKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    #[error("unexpected end of input")]
    UnexpectedEof,
    #[error("unexpected byte {0:#04x}")]
    UnexpectedByte(u8),
    #[error("integer with no digits")]
    EmptyInteger,
    #[error("leading zero in a number")]
    LeadingZero,
    #[error("negative zero")]
    NegativeZero,
    #[error("integer does not fit in 64 bits")]
    IntegerOverflow,
    #[error("string length runs past the end of the input")]
    LengthPastEnd,
    #[error("dictionary key is not a byte string")]
    NonStringKey,
    #[error("duplicate dictionary key")]
    DuplicateKey,
    #[error("nesting deeper than the limit")]
    TooDeep,
    #[error("more values than the limit")]
    TooManyValues,
    #[error("trailing bytes after the value")]
    TrailingBytes,
}

/// Decodes exactly one value that spans the whole input.
pub fn decode(input: &[u8]) -> Result<Value<'_>, DecodeError> {
    decode_with(input, Limits::DEFAULT)
}

/// [`decode`] with explicit limits.
pub fn decode_with(input: &[u8], limits: Limits) -> Result<Value<'_>, DecodeError> {
    let (value, used) = decode_prefix_with(input, limits)?;
    if used != input.len() {
        return Err(DecodeError {
            offset: used,
            kind: DecodeErrorKind::TrailingBytes,
        });
    }
    Ok(value)
}

/// Decodes one value from the start of `input` and returns it with the number
/// of bytes it used. BEP 9 data messages carry raw bytes after a dictionary.
pub fn decode_prefix(input: &[u8]) -> Result<(Value<'_>, usize), DecodeError> {
    decode_prefix_with(input, Limits::DEFAULT)
}

fn decode_prefix_with(input: &[u8], limits: Limits) -> Result<(Value<'_>, usize), DecodeError> {
    let mut d = Decoder {
        input,
        pos: 0,
        limits,
        values: 0,
    };
    let v = d.value(0)?;
    Ok((v, d.pos))
}

struct Decoder<'a> {
    input: &'a [u8],
    pos: usize,
    limits: Limits,
    values: usize,
}

impl<'a> Decoder<'a> {
    fn err(&self, offset: usize, kind: DecodeErrorKind) -> DecodeError {
        DecodeError { offset, kind }
    }

    fn peek(&self) -> Result<u8, DecodeError> {
        self.input
            .get(self.pos)
            .copied()
            .ok_or_else(|| self.err(self.pos, DecodeErrorKind::UnexpectedEof))
    }

    fn value(&mut self, depth: usize) -> Result<Value<'a>, DecodeError> {
        let start = self.pos;
        self.values += 1;
        if self.values > self.limits.max_values {
            return Err(self.err(start, DecodeErrorKind::TooManyValues));
        }
        let kind = match self.peek()? {
            b'i' => {
                self.pos += 1;
                Kind::Int(self.int(b'e')?)
            }
            b'0'..=b'9' => Kind::Bytes(self.bytes()?),
            b'l' => {
                self.enter(depth)?;
                let mut items = Vec::new();
                while self.peek()? != b'e' {
                    items.push(self.value(depth + 1)?);
                }
                self.pos += 1;
                Kind::List(items)
            }
            b'd' => {
                self.enter(depth)?;
                Kind::Dict(self.dict(depth)?)
            }
            other => return Err(self.err(start, DecodeErrorKind::UnexpectedByte(other))),
        };
        Ok(Value {
            kind,
            raw: &self.input[start..self.pos],
            offset: start,
        })
    }

    fn enter(&mut self, depth: usize) -> Result<(), DecodeError> {
        if depth >= self.limits.max_depth {
            return Err(self.err(self.pos, DecodeErrorKind::TooDeep));
        }
        self.pos += 1;
        Ok(())
    }

    fn dict(&mut self, depth: usize) -> Result<Dict<'a>, DecodeError> {
        let mut entries: Vec<(&'a [u8], Value<'a>)> = Vec::new();
        let mut sorted = true;
        let mut key_offsets = Vec::new();
        while self.peek()? != b'e' {
            let key_at = self.pos;
            if !self.peek()?.is_ascii_digit() {
                return Err(self.err(key_at, DecodeErrorKind::NonStringKey));
            }
            let key = self.bytes()?;
            if let Some((last, _)) = entries.last() {
                if *last == key {
                    return Err(self.err(key_at, DecodeErrorKind::DuplicateKey));
                }
                sorted &= *last < key;
            }
            key_offsets.push(key_at);
            let value = self.value(depth + 1)?;
            entries.push((key, value));
        }
        self.pos += 1;
        if !sorted {
            // Unsorted input is accepted (its hash is what it is), but a repeated
            // key is ambiguous: two readers could pick different values.
            let mut order: Vec<usize> = (0..entries.len()).collect();
            order.sort_by(|&a, &b| entries[a].0.cmp(entries[b].0).then(a.cmp(&b)));
            for pair in order.windows(2) {
                if entries[pair[0]].0 == entries[pair[1]].0 {
                    return Err(self.err(key_offsets[pair[1]], DecodeErrorKind::DuplicateKey));
                }
            }
        }
        Ok(Dict { entries })
    }

    /// Parses a byte string `<len>:<bytes>`.
    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let start = self.pos;
        // Callers only get here on a digit, so `int` never sees a sign.
        let len = self.int(b':')?;
        let len =
            usize::try_from(len).map_err(|_| self.err(start, DecodeErrorKind::IntegerOverflow))?;
        let end = self
            .pos
            .checked_add(len)
            .filter(|&end| end <= self.input.len())
            .ok_or_else(|| self.err(start, DecodeErrorKind::LengthPastEnd))?;
        let out = &self.input[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    /// Parses a decimal integer ending in `terminator`, starting at `self.pos`.
    fn int(&mut self, terminator: u8) -> Result<i64, DecodeError> {
        let start = self.pos;
        let negative = self.peek()? == b'-';
        if negative {
            self.pos += 1;
        }
        let digits_at = self.pos;
        let mut value: i64 = 0;
        loop {
            let b = self.peek()?;
            if b == terminator {
                break;
            }
            if !b.is_ascii_digit() {
                return Err(self.err(self.pos, DecodeErrorKind::UnexpectedByte(b)));
            }
            let digit = i64::from(b - b'0');
            // Accumulate negatively so that i64::MIN is representable.
            value = value
                .checked_mul(10)
                .and_then(|v| {
                    if negative {
                        v.checked_sub(digit)
                    } else {
                        v.checked_add(digit)
                    }
                })
                .ok_or_else(|| self.err(start, DecodeErrorKind::IntegerOverflow))?;
            self.pos += 1;
        }
        let ndigits = self.pos - digits_at;
        if ndigits == 0 {
            return Err(self.err(start, DecodeErrorKind::EmptyInteger));
        }
        if self.input[digits_at] == b'0' {
            if ndigits > 1 {
                return Err(self.err(digits_at, DecodeErrorKind::LeadingZero));
            }
            if negative {
                return Err(self.err(start, DecodeErrorKind::NegativeZero));
            }
        }
        self.pos += 1; // the terminator
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(input: &[u8]) -> (usize, DecodeErrorKind) {
        let e = decode(input).unwrap_err();
        (e.offset, e.kind)
    }

    #[test]
    fn decodes_each_kind_with_spans() {
        let input = b"d3:fooli-42e4:spame3:zapi0ee";
        let v = decode(input).unwrap();
        let foo = v.get(b"foo").unwrap();
        assert_eq!(foo.raw, b"li-42e4:spame");
        assert_eq!(foo.span(), 6..19);
        let list = foo.as_list().unwrap();
        assert_eq!(list[0].as_int(), Some(-42));
        assert_eq!(list[1].as_bytes(), Some(&b"spam"[..]));
        assert_eq!(v.get(b"zap").unwrap().as_int(), Some(0));
    }

    #[test]
    fn integer_edges() {
        assert_eq!(
            decode(b"i9223372036854775807e").unwrap().as_int(),
            Some(i64::MAX)
        );
        assert_eq!(
            decode(b"i-9223372036854775808e").unwrap().as_int(),
            Some(i64::MIN)
        );
        assert_eq!(
            err(b"i9223372036854775808e"),
            (1, DecodeErrorKind::IntegerOverflow)
        );
        assert_eq!(
            err(b"i-9223372036854775809e"),
            (1, DecodeErrorKind::IntegerOverflow)
        );
        assert_eq!(err(b"i03e"), (1, DecodeErrorKind::LeadingZero));
        assert_eq!(err(b"i-03e"), (2, DecodeErrorKind::LeadingZero));
        assert_eq!(err(b"i-0e"), (1, DecodeErrorKind::NegativeZero));
        assert_eq!(err(b"ie"), (1, DecodeErrorKind::EmptyInteger));
        assert_eq!(err(b"i-e"), (1, DecodeErrorKind::EmptyInteger));
        assert_eq!(err(b"i12"), (3, DecodeErrorKind::UnexpectedEof));
        assert_eq!(err(b"i1x2e"), (2, DecodeErrorKind::UnexpectedByte(b'x')));
        assert_eq!(err(b"i+1e"), (1, DecodeErrorKind::UnexpectedByte(b'+')));
    }

    #[test]
    fn string_edges() {
        assert_eq!(decode(b"0:").unwrap().as_bytes(), Some(&b""[..]));
        assert_eq!(err(b"5:abc"), (0, DecodeErrorKind::LengthPastEnd));
        assert_eq!(err(b"05:abcde"), (0, DecodeErrorKind::LeadingZero));
        assert_eq!(
            err(b"99999999999999999999:a"),
            (0, DecodeErrorKind::IntegerOverflow)
        );
        assert_eq!(
            err(b"18446744073709551615:a"),
            (0, DecodeErrorKind::IntegerOverflow)
        );
        assert_eq!(
            err(b"9223372036854775807:a"),
            (0, DecodeErrorKind::LengthPastEnd)
        );
        assert_eq!(err(b"3"), (1, DecodeErrorKind::UnexpectedEof));
    }

    #[test]
    fn structure_edges() {
        assert_eq!(err(b"i1ei2e"), (3, DecodeErrorKind::TrailingBytes));
        assert_eq!(err(b""), (0, DecodeErrorKind::UnexpectedEof));
        assert_eq!(err(b"l"), (1, DecodeErrorKind::UnexpectedEof));
        assert_eq!(err(b"di1ei2ee"), (1, DecodeErrorKind::NonStringKey));
        assert_eq!(err(b"d1:ai1e1:ai2ee"), (7, DecodeErrorKind::DuplicateKey));
        // Duplicate hidden by unsorted order.
        assert_eq!(
            err(b"d1:bi1e1:ai1e1:bi2ee"),
            (13, DecodeErrorKind::DuplicateKey)
        );
        assert_eq!(err(b"x"), (0, DecodeErrorKind::UnexpectedByte(b'x')));
        assert_eq!(err(b"d1:a"), (4, DecodeErrorKind::UnexpectedEof));
    }

    #[test]
    fn unsorted_keys_are_kept_in_input_order() {
        let v = decode(b"d1:bi1e1:ai2ee").unwrap();
        let keys: Vec<_> = v.as_dict().unwrap().iter().map(|(k, _)| k).collect();
        assert_eq!(keys, vec![&b"b"[..], &b"a"[..]]);
    }

    #[test]
    fn depth_is_bounded() {
        let limits = Limits::DEFAULT;
        let ok = format!(
            "{}{}",
            "l".repeat(limits.max_depth),
            "e".repeat(limits.max_depth)
        );
        assert!(decode(ok.as_bytes()).is_ok());
        let deep = format!(
            "{}{}",
            "l".repeat(limits.max_depth + 1),
            "e".repeat(limits.max_depth + 1)
        );
        assert_eq!(
            err(deep.as_bytes()),
            (limits.max_depth, DecodeErrorKind::TooDeep)
        );
        // Deep enough to overflow the stack without the limit.
        let hostile = "l".repeat(1_000_000);
        assert_eq!(err(hostile.as_bytes()).1, DecodeErrorKind::TooDeep);
    }

    #[test]
    fn value_count_is_bounded() {
        let limits = Limits {
            max_depth: 8,
            max_values: 10,
        };
        let input = format!("l{}e", "le".repeat(9));
        assert!(decode_with(input.as_bytes(), limits).is_ok());
        let input = format!("l{}e", "le".repeat(10));
        assert_eq!(
            decode_with(input.as_bytes(), limits).unwrap_err().kind,
            DecodeErrorKind::TooManyValues
        );
    }

    #[test]
    fn prefix_reports_consumed_length() {
        let (v, used) = decode_prefix(b"d1:ai1eeRAW").unwrap();
        assert_eq!(used, 8);
        assert_eq!(v.get(b"a").unwrap().as_int(), Some(1));
    }
}
