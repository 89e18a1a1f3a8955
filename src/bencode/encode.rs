use std::io::Write;

use super::value::{Kind, OwnedValue, Value};

/// Writes canonical bencode into a buffer.
///
/// For messages built field by field (wire extension handshakes, tracker
/// requests) the caller must write dictionary keys in sorted order; the
/// `value` and `owned` methods sort on their own.
pub struct Encoder<'o> {
    out: &'o mut Vec<u8>,
}

impl<'o> Encoder<'o> {
    pub fn new(out: &'o mut Vec<u8>) -> Self {
        Encoder { out }
    }

    pub fn int(&mut self, v: i64) -> &mut Self {
        // Writing into a Vec cannot fail.
        let _ = write!(self.out, "i{v}e");
        self
    }

    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        let _ = write!(self.out, "{}:", b.len());
        self.out.extend_from_slice(b);
        self
    }

    pub fn begin_list(&mut self) -> &mut Self {
        self.out.push(b'l');
        self
    }

    pub fn begin_dict(&mut self) -> &mut Self {
        self.out.push(b'd');
        self
    }

    /// Ends the innermost open list or dictionary.
    pub fn end(&mut self) -> &mut Self {
        self.out.push(b'e');
        self
    }

    /// Appends already-encoded bytes, such as an `info` dictionary that must
    /// keep its exact bytes.
    pub fn raw(&mut self, encoded: &[u8]) -> &mut Self {
        self.out.extend_from_slice(encoded);
        self
    }

    /// Encodes a decoded value canonically (dictionary keys sorted).
    pub fn value(&mut self, v: &Value<'_>) -> &mut Self {
        match &v.kind {
            Kind::Int(i) => self.int(*i),
            Kind::Bytes(b) => self.bytes(b),
            Kind::List(items) => {
                self.begin_list();
                for item in items {
                    self.value(item);
                }
                self.end()
            }
            Kind::Dict(d) => {
                let mut entries: Vec<_> = d.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                self.begin_dict();
                for (k, item) in entries {
                    self.bytes(k);
                    self.value(item);
                }
                self.end()
            }
        }
    }

    pub fn owned(&mut self, v: &OwnedValue) -> &mut Self {
        match v {
            OwnedValue::Int(i) => self.int(*i),
            OwnedValue::Bytes(b) => self.bytes(b),
            OwnedValue::List(items) => {
                self.begin_list();
                for item in items {
                    self.owned(item);
                }
                self.end()
            }
            OwnedValue::Dict(d) => {
                self.begin_dict();
                for (k, item) in d {
                    self.bytes(k);
                    self.owned(item);
                }
                self.end()
            }
        }
    }
}

/// Encodes a decoded value canonically.
pub fn encode(v: &Value<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.raw.len());
    Encoder::new(&mut out).value(v);
    out
}

#[cfg(test)]
mod tests {
    use super::super::{OwnedValue, decode};
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sorts_keys() {
        let v = decode(b"d1:bi1e1:al0:ee").unwrap();
        assert_eq!(encode(&v), b"d1:al0:e1:bi1ee");
    }

    #[test]
    fn canonical_input_round_trips_byte_for_byte() {
        let input: &[u8] = b"d4:infod6:lengthi5e4:name3:abce3:numi-7ee";
        assert_eq!(encode(&decode(input).unwrap()), input);
    }

    fn owned_strategy() -> impl Strategy<Value = OwnedValue> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(OwnedValue::Int),
            proptest::collection::vec(any::<u8>(), 0..24).prop_map(OwnedValue::Bytes),
        ];
        leaf.prop_recursive(5, 64, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(OwnedValue::List),
                proptest::collection::btree_map(
                    proptest::collection::vec(any::<u8>(), 0..8),
                    inner,
                    0..6
                )
                .prop_map(OwnedValue::Dict),
            ]
        })
    }

    proptest! {
        #[test]
        fn owned_round_trip(v in owned_strategy()) {
            let bytes = v.to_bytes();
            let decoded = decode(&bytes).unwrap();
            prop_assert_eq!(decoded.raw, &bytes[..]);
            prop_assert_eq!(decoded.to_owned_value(), v);
            prop_assert_eq!(encode(&decoded), bytes);
        }

        #[test]
        fn arbitrary_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(v) = decode(&input) {
                // Whatever decodes must re-encode to something that decodes to the same value.
                let again = encode(&v);
                prop_assert_eq!(decode(&again).unwrap().to_owned_value(), v.to_owned_value());
            }
        }

        #[test]
        fn truncation_is_always_an_error(v in owned_strategy(), cut in any::<prop::sample::Index>()) {
            let bytes = v.to_bytes();
            let cut = cut.index(bytes.len());
            prop_assert!(decode(&bytes[..cut]).is_err());
        }
    }
}
