use super::*;

/// Bounds on what a peer may make us buffer.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest piece message payload: we never request more than a block.
    pub max_block: u32,
    /// Largest other message body we buffer (bitfields, extension messages).
    pub max_body: u32,
}

impl Limits {
    /// Limits for a torrent of `piece_count` pieces: room for its bitfield, and
    /// 128 KiB for anything else.
    pub fn for_pieces(piece_count: u32) -> Limits {
        Limits {
            max_block: BLOCK_SIZE,
            max_body: (piece_count.div_ceil(8) + 1).max(128 * 1024),
        }
    }
}

/// What the decoder hands out.
#[derive(Debug, PartialEq, Eq)]
pub enum Event<'a> {
    Handshake(Handshake),
    Message(Message<'a>),
    /// A run of a piece message's payload: `data` belongs at
    /// `begin + offset` of piece `piece`; the block is `len` bytes in all and
    /// complete once `offset + data.len() == len`.
    Block {
        piece: u32,
        begin: u32,
        len: u32,
        offset: u32,
        data: &'a [u8],
    },
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// Collecting the 68-byte handshake into `buf`.
    Handshake,
    /// Collecting a message's 4-byte length and 1-byte id into `head`.
    Head,
    /// Collecting a piece message's index and begin into `head`.
    PieceHead { len: u32 },
    /// Streaming a piece message's payload.
    Block {
        piece: u32,
        begin: u32,
        len: u32,
        done: u32,
    },
    /// Collecting another message's body into `buf`.
    Body { id: u8, len: u32 },
}

/// An incremental decoder for one connection's incoming byte stream.
pub struct Decoder {
    state: State,
    head: [u8; 13],
    head_len: usize,
    buf: Vec<u8>,
    limits: Limits,
}

impl Decoder {
    /// A decoder whose stream starts with the BEP 3 handshake.
    pub fn new(limits: Limits) -> Decoder {
        Decoder {
            state: State::Handshake,
            head: [0; 13],
            head_len: 0,
            buf: Vec::new(),
            limits,
        }
    }

    /// Sets the limits for the rest of the stream (once the handshake has
    /// named the torrent).
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Bytes of an incomplete message held between calls (bounded by the limits).
    pub fn buffered(&self) -> usize {
        self.buf.capacity()
    }

    /// Decodes the next event from `input`, advancing it past what was used.
    /// `Ok(None)` means `input` is used up and more bytes are needed.
    pub fn decode<'x, 'i: 'x>(
        &'x mut self,
        input: &mut &'i [u8],
    ) -> Result<Option<Event<'x>>, WireError> {
        loop {
            match self.state {
                State::Handshake => {
                    if !fill_vec(&mut self.buf, HANDSHAKE_LEN, input) {
                        return Ok(None);
                    }
                    let mut raw = [0u8; HANDSHAKE_LEN];
                    raw.copy_from_slice(&self.buf);
                    self.buf = Vec::new();
                    self.state = State::Head;
                    return Handshake::decode(&raw).map(|h| Some(Event::Handshake(h)));
                }
                State::Head => {
                    // The length prefix first: a keep-alive has no id byte.
                    if !fill(&mut self.head, &mut self.head_len, 4, input) {
                        return Ok(None);
                    }
                    let len = u32::from_be_bytes([
                        self.head[0],
                        self.head[1],
                        self.head[2],
                        self.head[3],
                    ]);
                    if len == 0 {
                        self.head_len = 0;
                        return Ok(Some(Event::Message(Message::KeepAlive)));
                    }
                    if !fill(&mut self.head, &mut self.head_len, 5, input) {
                        return Ok(None);
                    }
                    let id = self.head[4];
                    if id == MSG_PIECE {
                        if len < 9 {
                            return Err(WireError::BadLength { id, len });
                        }
                        if len - 9 > self.limits.max_block {
                            return Err(WireError::BlockTooLong { len: len - 9 });
                        }
                        self.state = State::PieceHead { len };
                    } else {
                        let body = len - 1;
                        if body > self.limits.max_body {
                            return Err(WireError::TooLong {
                                id: Some(id),
                                len,
                                max: self.limits.max_body + 1,
                            });
                        }
                        self.head_len = 0;
                        // Whole body already here: parse it in place, no copy.
                        if input.len() >= body as usize {
                            let (body, rest) = input.split_at(body as usize);
                            *input = rest;
                            self.state = State::Head;
                            return Message::parse(id, body).map(|m| Some(Event::Message(m)));
                        }
                        self.buf.clear();
                        self.state = State::Body { id, len: body };
                    }
                }
                State::PieceHead { len } => {
                    if !fill(&mut self.head, &mut self.head_len, 13, input) {
                        return Ok(None);
                    }
                    let piece = u32::from_be_bytes([
                        self.head[5],
                        self.head[6],
                        self.head[7],
                        self.head[8],
                    ]);
                    let begin = u32::from_be_bytes([
                        self.head[9],
                        self.head[10],
                        self.head[11],
                        self.head[12],
                    ]);
                    self.head_len = 0;
                    let len = len - 9;
                    self.state = State::Block {
                        piece,
                        begin,
                        len,
                        done: 0,
                    };
                    if len == 0 {
                        self.state = State::Head;
                        return Ok(Some(Event::Block {
                            piece,
                            begin,
                            len,
                            offset: 0,
                            data: &[],
                        }));
                    }
                }
                State::Block {
                    piece,
                    begin,
                    len,
                    done,
                } => {
                    let n = (len - done).min(input.len() as u32) as usize;
                    if n == 0 {
                        return Ok(None);
                    }
                    let (data, rest) = input.split_at(n);
                    *input = rest;
                    let offset = done;
                    let done = done + n as u32;
                    self.state = if done == len {
                        State::Head
                    } else {
                        State::Block {
                            piece,
                            begin,
                            len,
                            done,
                        }
                    };
                    return Ok(Some(Event::Block {
                        piece,
                        begin,
                        len,
                        offset,
                        data,
                    }));
                }
                State::Body { id, len } => {
                    if !fill_vec(&mut self.buf, len as usize, input) {
                        return Ok(None);
                    }
                    self.state = State::Head;
                    // `buf` keeps its allocation; the next body clears it.
                    return Message::parse(id, &self.buf).map(|m| Some(Event::Message(m)));
                }
            }
        }
    }
}

/// Copies from `input` until `buf[..*have]` holds `want` bytes.
fn fill(buf: &mut [u8], have: &mut usize, want: usize, input: &mut &[u8]) -> bool {
    let n = (want - (*have).min(want)).min(input.len());
    buf[*have..*have + n].copy_from_slice(&input[..n]);
    *have += n;
    *input = &input[n..];
    *have >= want
}

fn fill_vec(buf: &mut Vec<u8>, want: usize, input: &mut &[u8]) -> bool {
    let n = (want - buf.len()).min(input.len());
    buf.extend_from_slice(&input[..n]);
    *input = &input[n..];
    buf.len() == want
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metainfo::InfoHash;
    use proptest::prelude::*;

    fn limits() -> Limits {
        Limits::for_pieces(100)
    }

    const HASH_REQ: HashRequest = HashRequest {
        root: [9; 32],
        base: 6,
        index: 512,
        count: 2,
        proof_layers: 3,
    };

    #[test]
    fn hash_messages_of_the_wrong_length_are_refused() {
        let mut s = Vec::new();
        Message::HashRequest(HASH_REQ).encode(&mut s);
        // One byte short of a request, as a request, a reject and hashes.
        for id in [MSG_HASH_REQUEST, MSG_HASH_REJECT, MSG_HASHES] {
            let body = &s[5..s.len() - 1];
            assert!(matches!(
                Message::parse(id, body),
                Err(WireError::BadLength { .. })
            ));
        }
        // Hashes whose payload is not whole hashes.
        let mut h = s[5..].to_vec();
        h.extend_from_slice(&[0; 33]);
        assert!(Message::parse(MSG_HASHES, &h).is_err());
        h.truncate(h.len() - 1);
        assert!(matches!(
            Message::parse(MSG_HASHES, &h),
            Ok(Message::Hashes { hashes, .. }) if hashes.len() == 32
        ));
    }

    #[test]
    fn uncles_are_the_proof_layers_above_the_requested_subtree() {
        let r = |count, proof_layers| HashRequest {
            count,
            proof_layers,
            ..HASH_REQ
        };
        // What libtorrent 2.0 sends and expects: 512 piece hashes of a
        // 1024-wide layer with proof layers 9 come with one uncle.
        assert_eq!(r(512, 9).uncles(), 1);
        assert_eq!(r(512, 12).uncles(), 4);
        assert_eq!(r(512, 0).uncles(), 0);
        assert_eq!(r(2, 0).uncles(), 0);
        assert_eq!(r(1, 0).uncles(), 1);
    }

    /// Owned form of events, for comparing whole streams.
    #[derive(Debug, PartialEq, Eq)]
    enum Owned {
        Handshake(Handshake),
        Message(String),
        /// Reassembled block: (piece, begin, bytes).
        Block(u32, u32, Vec<u8>),
    }

    /// Feeds `stream` in chunks of the given sizes; reassembles blocks.
    fn decode_all(stream: &[u8], chunks: &[usize]) -> Result<Vec<Owned>, WireError> {
        let mut d = Decoder::new(limits());
        let mut out = Vec::new();
        let mut partial: Option<(u32, u32, Vec<u8>)> = None;
        let mut rest = stream;
        let mut sizes = chunks.iter().cycle();
        while !rest.is_empty() {
            let n = (*sizes.next().unwrap()).clamp(1, rest.len());
            let mut input = &rest[..n];
            rest = &rest[n..];
            while let Some(ev) = d.decode(&mut input)? {
                match ev {
                    Event::Handshake(h) => out.push(Owned::Handshake(h)),
                    Event::Message(m) => out.push(Owned::Message(format!("{m:?}"))),
                    Event::Block {
                        piece,
                        begin,
                        len,
                        offset,
                        data,
                    } => {
                        let p = partial.get_or_insert((piece, begin, Vec::new()));
                        assert_eq!(p.2.len() as u32, offset);
                        p.2.extend_from_slice(data);
                        if offset + data.len() as u32 == len {
                            let (a, b, c) = partial.take().unwrap();
                            out.push(Owned::Block(a, b, c));
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    fn sample_stream() -> (Vec<u8>, Vec<Owned>) {
        let hs = Handshake::ours(InfoHash([7; 20]), PeerId([9; 20]));
        let mut s = hs.encode().to_vec();
        let mut expect = vec![Owned::Handshake(hs)];
        let msgs = [
            Message::Bitfield(&[0xff; 13]),
            Message::KeepAlive,
            Message::Unchoke,
            Message::Have(42),
            Message::Request(BlockRef {
                piece: 1,
                begin: 16384,
                len: 16384,
            }),
            Message::HaveAll,
            Message::Reject(BlockRef {
                piece: 2,
                begin: 0,
                len: 100,
            }),
            Message::AllowedFast(3),
            Message::Extended {
                id: 0,
                payload: b"d1:md6:ut_pexi1eee",
            },
            Message::Port(6881),
            Message::HashRequest(HASH_REQ),
            Message::Hashes {
                req: HASH_REQ,
                hashes: &[7; 64],
            },
            Message::HashReject(HASH_REQ),
        ];
        for m in msgs {
            m.encode(&mut s);
            expect.push(Owned::Message(format!("{m:?}")));
        }
        let block: Vec<u8> = (0..BLOCK_SIZE).map(|i| i as u8).collect();
        s.extend_from_slice(&encode_piece_header(5, 32768, BLOCK_SIZE));
        s.extend_from_slice(&block);
        expect.push(Owned::Block(5, 32768, block));
        Message::Cancel(BlockRef {
            piece: 5,
            begin: 0,
            len: 1,
        })
        .encode(&mut s);
        expect.push(Owned::Message(format!(
            "{:?}",
            Message::Cancel(BlockRef {
                piece: 5,
                begin: 0,
                len: 1
            })
        )));
        (s, expect)
    }

    #[test]
    fn whole_stream_at_once() {
        let (s, expect) = sample_stream();
        assert_eq!(decode_all(&s, &[s.len()]).unwrap(), expect);
    }

    #[test]
    fn byte_by_byte() {
        let (s, expect) = sample_stream();
        assert_eq!(decode_all(&s, &[1]).unwrap(), expect);
    }

    proptest! {
        #[test]
        fn any_chunking_gives_the_same_events(chunks in proptest::collection::vec(1usize..3000, 1..20)) {
            let (s, expect) = sample_stream();
            prop_assert_eq!(decode_all(&s, &chunks).unwrap(), expect);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300), chunk in 1usize..50) {
            let mut s = Handshake::ours(InfoHash([0; 20]), PeerId([0; 20])).encode().to_vec();
            s.extend_from_slice(&bytes);
            let _ = decode_all(&s, &[chunk]);
        }
    }

    fn after_handshake(rest: &[u8]) -> Result<Vec<Owned>, WireError> {
        let mut s = Handshake::ours(InfoHash([0; 20]), PeerId([0; 20]))
            .encode()
            .to_vec();
        s.extend_from_slice(rest);
        decode_all(&s, &[s.len()])
    }

    #[test]
    fn violations() {
        let mut hs = Handshake::ours(InfoHash([0; 20]), PeerId([0; 20])).encode();
        hs[3] = b'X';
        assert_eq!(decode_all(&hs, &[68]), Err(WireError::BadProtocol));
        // Oversized body.
        let big = (limits().max_body + 2).to_be_bytes();
        assert!(matches!(
            after_handshake(&[big[0], big[1], big[2], big[3], MSG_BITFIELD]),
            Err(WireError::TooLong {
                id: Some(MSG_BITFIELD),
                ..
            })
        ));
        // A block larger than we ever request.
        let mut s = encode_piece_header(0, 0, BLOCK_SIZE + 1).to_vec();
        s.extend_from_slice(&[0; 8]);
        assert_eq!(
            after_handshake(&s),
            Err(WireError::BlockTooLong {
                len: BLOCK_SIZE + 1
            })
        );
        // Piece message too short for its header.
        assert_eq!(
            after_handshake(&[0, 0, 0, 5, MSG_PIECE, 0, 0, 0, 0]),
            Err(WireError::BadLength {
                id: MSG_PIECE,
                len: 5
            })
        );
        // Fixed-size messages with the wrong size.
        assert_eq!(
            after_handshake(&[0, 0, 0, 2, MSG_CHOKE, 0]),
            Err(WireError::BadLength {
                id: MSG_CHOKE,
                len: 2
            })
        );
        assert_eq!(
            after_handshake(&[0, 0, 0, 4, MSG_HAVE, 0, 0, 0]),
            Err(WireError::BadLength {
                id: MSG_HAVE,
                len: 4
            })
        );
        assert_eq!(
            after_handshake(&[0, 0, 0, 1, MSG_EXTENDED]),
            Err(WireError::BadLength {
                id: MSG_EXTENDED,
                len: 1
            })
        );
        // Unknown ids are skipped, not fatal.
        assert_eq!(
            after_handshake(&[0, 0, 0, 3, 99, 1, 2]).unwrap()[1],
            Owned::Message("Unknown { id: 99 }".into())
        );
    }
}
