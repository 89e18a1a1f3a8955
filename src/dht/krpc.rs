//! KRPC (BEP 5): the DHT's bencoded messages over UDP. Queries `ping`,
//! `find_node`, `get_peers`, `announce_peer`; their responses; errors.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};

use crate::bencode::{self, Encoder};

/// A node id or an info-hash: 160 bits, compared by XOR distance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(pub [u8; 20]);

impl NodeId {
    pub fn distance(&self, other: &NodeId) -> [u8; 20] {
        let mut d = [0u8; 20];
        for (i, b) in d.iter_mut().enumerate() {
            *b = self.0[i] ^ other.0[i];
        }
        d
    }

    /// The number of leading bits `self` and `other` share (160: equal).
    pub fn common_prefix(&self, other: &NodeId) -> usize {
        let d = self.distance(other);
        d.iter()
            .position(|&b| b != 0)
            .map_or(160, |i| i * 8 + d[i].leading_zeros() as usize)
    }
}

/// A compact node: its id and IPv4 address (26 bytes on the wire).
pub type Contact = (NodeId, SocketAddrV4);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query<'a> {
    Ping,
    FindNode {
        target: NodeId,
    },
    GetPeers {
        info_hash: NodeId,
    },
    AnnouncePeer {
        info_hash: NodeId,
        port: u16,
        implied_port: bool,
        token: &'a [u8],
    },
    /// A method we do not know (BEP 5 asks for error 204).
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Response<'a> {
    pub id: Option<NodeId>,
    pub nodes: Vec<Contact>,
    pub values: Vec<SocketAddr>,
    pub token: Option<&'a [u8]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body<'a> {
    Query { id: NodeId, query: Query<'a> },
    Response(Response<'a>),
    Error { code: i64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg<'a> {
    /// Transaction id: any short string the querier chose (libtorrent
    /// uses two bytes, others four).
    pub t: &'a [u8],
    pub body: Body<'a>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KrpcError {
    #[error("not a bencoded dictionary")]
    NotDict,
    #[error("no valid `{0}`")]
    Field(&'static str),
}

/// Values at most in one message: a response carries 8 nodes or up to
/// about 100 peers; anything much bigger is not a message we want.
const LIMITS: bencode::Limits = bencode::Limits {
    max_depth: 4,
    max_values: 512,
};
/// Peers kept from one response, and nodes.
pub const MAX_VALUES: usize = 100;
const MAX_NODES: usize = 16;

impl<'a> Msg<'a> {
    pub fn decode(bytes: &'a [u8]) -> Result<Msg<'a>, KrpcError> {
        let v = bencode::decode_with(bytes, LIMITS).map_err(|_| KrpcError::NotDict)?;
        let d = v.as_dict().ok_or(KrpcError::NotDict)?;
        let t = d
            .get(b"t")
            .and_then(|t| t.as_bytes())
            .filter(|t| t.len() <= 16)
            .ok_or(KrpcError::Field("t"))?;
        let y = d
            .get(b"y")
            .and_then(|y| y.as_bytes())
            .ok_or(KrpcError::Field("y"))?;
        let body = match y {
            b"q" => query_body(d)?,
            b"r" => {
                let r = d
                    .get(b"r")
                    .and_then(|r| r.as_dict())
                    .ok_or(KrpcError::Field("r"))?;
                Body::Response(Response {
                    id: id_of(r, "id"),
                    nodes: r
                        .get(b"nodes")
                        .and_then(|n| n.as_bytes())
                        .map(|b| b.chunks_exact(26).map(contact).take(MAX_NODES).collect())
                        .unwrap_or_default(),
                    values: r
                        .get(b"values")
                        .and_then(|v| v.as_list())
                        .map(|l| {
                            l.iter()
                                .filter_map(|v| v.as_bytes())
                                .filter_map(|b| match b.len() {
                                    6 => crate::tracker::compact_v4(b).next(),
                                    18 => crate::tracker::compact_v6(b).next(),
                                    _ => None,
                                })
                                .take(MAX_VALUES)
                                .collect()
                        })
                        .unwrap_or_default(),
                    token: r.get(b"token").and_then(|t| t.as_bytes()),
                })
            }
            b"e" => Body::Error {
                code: d
                    .get(b"e")
                    .and_then(|e| e.as_list())
                    .and_then(|l| l.first())
                    .and_then(|c| c.as_int())
                    .unwrap_or(0),
            },
            _ => return Err(KrpcError::Field("y")),
        };
        Ok(Msg { t, body })
    }
}

fn id_of(d: &bencode::Dict<'_>, key: &str) -> Option<NodeId> {
    d.get(key.as_bytes())
        .and_then(|i| i.as_bytes())
        .and_then(|b| <[u8; 20]>::try_from(b).ok())
        .map(NodeId)
}

/// A node from its 26 compact bytes (`c` must hold at least 26).
pub fn contact(c: &[u8]) -> Contact {
    let mut id = [0u8; 20];
    id.copy_from_slice(&c[..20]);
    let ip = Ipv4Addr::new(c[20], c[21], c[22], c[23]);
    (
        NodeId(id),
        SocketAddrV4::new(ip, u16::from_be_bytes([c[24], c[25]])),
    )
}

fn query_body<'a>(d: &bencode::Dict<'a>) -> Result<Body<'a>, KrpcError> {
    let q = d
        .get(b"q")
        .and_then(|q| q.as_bytes())
        .ok_or(KrpcError::Field("q"))?;
    let a = d
        .get(b"a")
        .and_then(|a| a.as_dict())
        .ok_or(KrpcError::Field("a"))?;
    let id = id_of(a, "id").ok_or(KrpcError::Field("id"))?;
    let hash = |k: &'static str| id_of(a, k).ok_or(KrpcError::Field(k));
    let query = match q {
        b"ping" => Query::Ping,
        b"find_node" => Query::FindNode {
            target: hash("target")?,
        },
        b"get_peers" => Query::GetPeers {
            info_hash: hash("info_hash")?,
        },
        b"announce_peer" => Query::AnnouncePeer {
            info_hash: hash("info_hash")?,
            port: a
                .get(b"port")
                .and_then(|p| p.as_int())
                .and_then(|p| u16::try_from(p).ok())
                .ok_or(KrpcError::Field("port"))?,
            implied_port: a
                .get(b"implied_port")
                .and_then(|p| p.as_int())
                .is_some_and(|p| p != 0),
            token: a
                .get(b"token")
                .and_then(|t| t.as_bytes())
                .ok_or(KrpcError::Field("token"))?,
        },
        _ => Query::Unknown,
    };
    Ok(Body::Query { id, query })
}

/// Nodes as 26 bytes each: id, IPv4 address, port.
pub fn compact_nodes(nodes: &[Contact]) -> Vec<u8> {
    let mut out = Vec::with_capacity(nodes.len() * 26);
    for (nid, addr) in nodes {
        out.extend_from_slice(&nid.0);
        out.extend_from_slice(&addr.ip().octets());
        out.extend_from_slice(&addr.port().to_be_bytes());
    }
    out
}

/// Our client version in every message: `RT` and 0.1.
const VERSION: &[u8] = b"RT\x00\x01";

/// Writes a query from node `id`.
pub fn query(t: &[u8], id: &NodeId, q: &Query<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    let mut e = Encoder::new(&mut out);
    e.begin_dict();
    // Every dictionary's keys in sorted order.
    e.bytes(b"a").begin_dict();
    e.bytes(b"id").bytes(&id.0);
    let name: &[u8] = match q {
        Query::Ping | Query::Unknown => b"ping",
        Query::FindNode { target } => {
            e.bytes(b"target").bytes(&target.0);
            b"find_node"
        }
        Query::GetPeers { info_hash } => {
            e.bytes(b"info_hash").bytes(&info_hash.0);
            b"get_peers"
        }
        Query::AnnouncePeer {
            info_hash,
            port,
            implied_port,
            token,
        } => {
            e.bytes(b"implied_port").int(i64::from(*implied_port));
            e.bytes(b"info_hash").bytes(&info_hash.0);
            e.bytes(b"port").int(i64::from(*port));
            e.bytes(b"token").bytes(token);
            b"announce_peer"
        }
    };
    e.end();
    e.bytes(b"q").bytes(name);
    e.bytes(b"t").bytes(t);
    e.bytes(b"v").bytes(VERSION);
    e.bytes(b"y").bytes(b"q");
    e.end();
    out
}

/// Writes a response from node `id`.
pub fn response(t: &[u8], id: &NodeId, r: &Response<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let mut e = Encoder::new(&mut out);
    e.begin_dict();
    e.bytes(b"r").begin_dict();
    e.bytes(b"id").bytes(&id.0);
    if !r.nodes.is_empty() {
        e.bytes(b"nodes").bytes(&compact_nodes(&r.nodes));
    }
    if let Some(token) = r.token {
        e.bytes(b"token").bytes(token);
    }
    if !r.values.is_empty() {
        e.bytes(b"values").begin_list();
        for a in &r.values {
            let mut c = Vec::with_capacity(18);
            match a.ip() {
                IpAddr::V4(ip) => c.extend_from_slice(&ip.octets()),
                IpAddr::V6(ip) => c.extend_from_slice(&ip.octets()),
            }
            c.extend_from_slice(&a.port().to_be_bytes());
            e.bytes(&c);
        }
        e.end();
    }
    e.end();
    e.bytes(b"t").bytes(t);
    e.bytes(b"v").bytes(VERSION);
    e.bytes(b"y").bytes(b"r");
    e.end();
    out
}

/// Writes an error: 201 generic, 203 protocol, 204 method unknown.
pub fn error(t: &[u8], code: i64, text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    let mut e = Encoder::new(&mut out);
    e.begin_dict();
    e.bytes(b"e")
        .begin_list()
        .int(code)
        .bytes(text.as_bytes())
        .end();
    e.bytes(b"t").bytes(t);
    e.bytes(b"v").bytes(VERSION);
    e.bytes(b"y").bytes(b"e");
    e.end();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_and_responses_round_trip() {
        let id = NodeId([7; 20]);
        let h = NodeId([9; 20]);
        for q in [
            Query::Ping,
            Query::FindNode { target: h },
            Query::GetPeers { info_hash: h },
            Query::AnnouncePeer {
                info_hash: h,
                port: 6881,
                implied_port: true,
                token: b"tok",
            },
        ] {
            let bytes = query(b"ab", &id, &q);
            assert_eq!(
                Msg::decode(&bytes),
                Ok(Msg {
                    t: b"ab",
                    body: Body::Query { id, query: q }
                })
            );
        }
        let r = Response {
            id: Some(id),
            nodes: vec![(h, "10.0.0.1:6881".parse().unwrap())],
            values: vec!["10.0.0.2:1".parse().unwrap(), "[::1]:2".parse().unwrap()],
            token: Some(b"xyz"),
        };
        let bytes = response(b"\x01\x02", &id, &r);
        assert_eq!(Msg::decode(&bytes).unwrap().body, Body::Response(r));
        let e = error(b"zz", 204, "Method Unknown");
        assert_eq!(Msg::decode(&e).unwrap().body, Body::Error { code: 204 });
    }

    #[test]
    fn libtorrents_query_decodes_and_garbage_does_not() {
        let lt = b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz123456e1:q9:get_peers1:t2:\xc5\x111:v4:LT\x02\x081:y1:qe";
        let m = Msg::decode(lt).unwrap();
        assert_eq!(m.t, b"\xc5\x11");
        assert!(matches!(
            m.body,
            Body::Query {
                query: Query::GetPeers { .. },
                ..
            }
        ));
        assert_eq!(Msg::decode(b"le"), Err(KrpcError::NotDict));
        assert_eq!(Msg::decode(b"d1:y1:qe"), Err(KrpcError::Field("t")));
        assert_eq!(
            Msg::decode(b"d1:ad2:id3:abce1:q4:ping1:t2:aa1:y1:qe"),
            Err(KrpcError::Field("id"))
        );
        assert!(matches!(
            Msg::decode(b"d1:ad2:id20:abcdefghij0123456789e1:q5:vote!1:t2:aa1:y1:qe"),
            Ok(Msg {
                body: Body::Query {
                    query: Query::Unknown,
                    ..
                },
                ..
            })
        ));
    }

    #[test]
    fn distance_and_prefix() {
        let a = NodeId([0; 20]);
        let mut b = [0u8; 20];
        b[1] = 0x10;
        assert_eq!(a.common_prefix(&NodeId(b)), 11);
        assert_eq!(a.common_prefix(&a), 160);
    }
}
