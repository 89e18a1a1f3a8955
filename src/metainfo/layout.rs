//! Where each piece's bytes live: a torrent is one byte stream cut into
//! pieces, and the same stream cut into files.

use std::ops::Range;

use super::Info;

/// A contiguous run of bytes inside one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileSpan {
    /// Index into [`Info::files`].
    pub file: usize,
    /// Offset inside the file.
    pub offset: u64,
    pub len: u64,
}

impl Info {
    /// Length of `piece` (the last one may be short). Panics on an index out
    /// of range: callers validate indices that come from peers first.
    pub fn piece_len(&self, piece: u32) -> u32 {
        assert!(piece < self.piece_count(), "piece {piece} out of range");
        let start = self.piece_offset(piece);
        (self.total_length - start).min(u64::from(self.piece_length)) as u32
    }

    /// Offset of `piece`'s first byte in the torrent's byte stream.
    pub fn piece_offset(&self, piece: u32) -> u64 {
        u64::from(piece) * u64::from(self.piece_length)
    }

    /// Whether `begin..begin+len` lies inside `piece`.
    pub fn contains(&self, piece: u32, begin: u32, len: u32) -> bool {
        piece < self.piece_count()
            && u64::from(begin) + u64::from(len) <= u64::from(self.piece_len(piece))
    }

    /// The file spans holding torrent bytes `range`, in order. Zero-length
    /// files never appear; pad files do (callers decide what to do with them).
    pub fn spans(&self, range: Range<u64>) -> impl Iterator<Item = FileSpan> + '_ {
        let range = range.start..range.end.min(self.total_length);
        // First file whose end lies past range.start.
        let first = self
            .files
            .partition_point(|f| f.offset + f.length <= range.start);
        self.files[first..]
            .iter()
            .enumerate()
            .take_while(move |(_, f)| f.offset < range.end)
            .filter(|(_, f)| f.length > 0)
            .map(move |(i, f)| {
                let start = range.start.max(f.offset);
                let end = range.end.min(f.offset + f.length);
                FileSpan {
                    file: first + i,
                    offset: start - f.offset,
                    len: end - start,
                }
            })
    }

    /// The spans of a block inside a piece.
    pub fn block_spans(
        &self,
        piece: u32,
        begin: u32,
        len: u32,
    ) -> impl Iterator<Item = FileSpan> + '_ {
        let start = self.piece_offset(piece) + u64::from(begin);
        self.spans(start..start + u64::from(len))
    }

    /// Pieces that hold at least one byte of `file` (empty for empty files).
    pub fn file_pieces(&self, file: usize) -> Range<u32> {
        let f = &self.files[file];
        if f.length == 0 {
            return 0..0;
        }
        let pl = u64::from(self.piece_length);
        let first = f.offset / pl;
        let last = (f.offset + f.length - 1) / pl;
        first as u32..last as u32 + 1
    }
}

#[cfg(test)]
mod tests {
    use super::super::{FileAttr, FileEntry, Info};
    use super::*;
    use proptest::prelude::*;

    fn info(lengths: &[u64], piece_length: u32) -> Info {
        let mut offset = 0;
        let files = lengths
            .iter()
            .enumerate()
            .map(|(i, &length)| {
                let f = FileEntry {
                    path: vec!["t".into(), format!("f{i}")],
                    length,
                    offset,
                    attr: FileAttr::default(),
                };
                offset += length;
                f
            })
            .collect();
        let count = offset.div_ceil(u64::from(piece_length)) as usize;
        Info {
            name: "t".into(),
            piece_length,
            pieces: vec![[0; 20]; count],
            pieces_v2: Vec::new(),
            v2_layers: Vec::new(),
            files,
            private: false,
            multi_file: true,
            total_length: offset,
        }
    }

    #[test]
    fn spans_cross_files_and_skip_empty_ones() {
        let i = info(&[10, 0, 5, 20], 8);
        assert_eq!(i.piece_count(), 5);
        assert_eq!(i.piece_len(4), 3);
        let spans: Vec<_> = i.block_spans(1, 0, 8).collect();
        assert_eq!(
            spans,
            vec![
                FileSpan {
                    file: 0,
                    offset: 8,
                    len: 2
                },
                FileSpan {
                    file: 2,
                    offset: 0,
                    len: 5
                },
                FileSpan {
                    file: 3,
                    offset: 0,
                    len: 1
                },
            ]
        );
        assert_eq!(i.file_pieces(0), 0..2);
        assert_eq!(i.file_pieces(1), 0..0);
        assert_eq!(i.file_pieces(2), 1..2);
        assert_eq!(i.file_pieces(3), 1..5);
    }

    #[test]
    fn contains_checks_piece_bounds() {
        let i = info(&[20], 8);
        assert!(i.contains(2, 0, 4));
        assert!(!i.contains(2, 0, 5));
        assert!(!i.contains(3, 0, 1));
        assert!(!i.contains(0, u32::MAX, 2));
    }

    proptest! {
        /// Spans of every piece tile the whole stream exactly once, in order.
        #[test]
        fn spans_tile_the_stream(
            lengths in proptest::collection::vec(0u64..50, 1..8),
            piece_length in 1u32..40,
        ) {
            prop_assume!(lengths.iter().sum::<u64>() > 0);
            let i = info(&lengths, piece_length);
            let mut covered = vec![0u32; lengths.len()];
            let mut stream = 0u64;
            for p in 0..i.piece_count() {
                let mut piece_total = 0;
                for s in i.block_spans(p, 0, i.piece_len(p)) {
                    let f = &i.files[s.file];
                    prop_assert_eq!(f.offset + s.offset, stream);
                    prop_assert!(s.offset + s.len <= f.length);
                    prop_assert!(i.file_pieces(s.file).contains(&p));
                    stream += s.len;
                    piece_total += s.len;
                    covered[s.file] += s.len as u32;
                }
                prop_assert_eq!(piece_total, u64::from(i.piece_len(p)));
            }
            prop_assert_eq!(stream, i.total_length);
            for (f, c) in i.files.iter().zip(covered) {
                prop_assert_eq!(u64::from(c), f.length);
            }
        }
    }
}
