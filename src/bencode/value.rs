use std::collections::BTreeMap;

/// A decoded value, borrowing from the input it was decoded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value<'a> {
    pub kind: Kind<'a>,
    /// The exact bytes this value was decoded from (its whole encoding).
    pub raw: &'a [u8],
    /// Offset of `raw` in the decoder's input; error messages name it.
    pub offset: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind<'a> {
    Int(i64),
    Bytes(&'a [u8]),
    List(Vec<Value<'a>>),
    Dict(Dict<'a>),
}

/// Dictionary entries in the order they appear in the input. Keys are unique
/// (the decoder rejects duplicates) but need not be sorted: some real torrents
/// are not canonical, and their info-hash must still match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dict<'a> {
    pub(crate) entries: Vec<(&'a [u8], Value<'a>)>,
}

impl<'a> Dict<'a> {
    pub fn get(&self, key: &[u8]) -> Option<&Value<'a>> {
        self.entries.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&'a [u8], &Value<'a>)> {
        self.entries.iter().map(|(k, v)| (*k, v))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl<'a> Value<'a> {
    /// The byte range of this value in the decoder's input.
    pub fn span(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.raw.len()
    }

    pub fn as_int(&self) -> Option<i64> {
        match self.kind {
            Kind::Int(i) => Some(i),
            _ => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self.kind {
            Kind::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The value as UTF-8 text, if it is a byte string holding valid UTF-8.
    pub fn as_str(&self) -> Option<&'a str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    pub fn as_list(&self) -> Option<&[Value<'a>]> {
        match &self.kind {
            Kind::List(l) => Some(l),
            _ => None,
        }
    }

    pub fn as_dict(&self) -> Option<&Dict<'a>> {
        match &self.kind {
            Kind::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// Looks `key` up if this value is a dictionary.
    pub fn get(&self, key: &[u8]) -> Option<&Value<'a>> {
        self.as_dict().and_then(|d| d.get(key))
    }

    pub fn to_owned_value(&self) -> OwnedValue {
        match &self.kind {
            Kind::Int(i) => OwnedValue::Int(*i),
            Kind::Bytes(b) => OwnedValue::Bytes(b.to_vec()),
            Kind::List(l) => OwnedValue::List(l.iter().map(Value::to_owned_value).collect()),
            Kind::Dict(d) => OwnedValue::Dict(
                d.iter()
                    .map(|(k, v)| (k.to_vec(), v.to_owned_value()))
                    .collect(),
            ),
        }
    }
}

/// An owned value for building messages and files. Its dictionary is a
/// `BTreeMap`, so encoding it is canonical by construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnedValue {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<OwnedValue>),
    Dict(BTreeMap<Vec<u8>, OwnedValue>),
}

impl OwnedValue {
    pub fn dict() -> Self {
        OwnedValue::Dict(BTreeMap::new())
    }

    /// Inserts into a dictionary; does nothing on other kinds.
    pub fn insert(&mut self, key: impl Into<Vec<u8>>, value: impl Into<OwnedValue>) -> &mut Self {
        if let OwnedValue::Dict(d) = self {
            d.insert(key.into(), value.into());
        }
        self
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let mut e = super::Encoder::new(out);
        e.owned(self);
    }
}

impl From<i64> for OwnedValue {
    fn from(v: i64) -> Self {
        OwnedValue::Int(v)
    }
}

impl From<&str> for OwnedValue {
    fn from(v: &str) -> Self {
        OwnedValue::Bytes(v.as_bytes().to_vec())
    }
}

impl From<String> for OwnedValue {
    fn from(v: String) -> Self {
        OwnedValue::Bytes(v.into_bytes())
    }
}

impl From<&[u8]> for OwnedValue {
    fn from(v: &[u8]) -> Self {
        OwnedValue::Bytes(v.to_vec())
    }
}

impl From<Vec<u8>> for OwnedValue {
    fn from(v: Vec<u8>) -> Self {
        OwnedValue::Bytes(v)
    }
}

impl From<Vec<OwnedValue>> for OwnedValue {
    fn from(v: Vec<OwnedValue>) -> Self {
        OwnedValue::List(v)
    }
}
