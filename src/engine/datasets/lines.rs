//! Splits a body that arrives in chunks into numbered lines, holding at most one line
//! (capped) in memory.

use bytes::{Buf, BytesMut};

/// One line of the body, numbered from 1.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Line {
    /// The line's bytes, without its `\n` (a trailing `\r` is left to the parser,
    /// which treats it as whitespace).
    Text(u64, BytesMut),
    /// The line is longer than the cap; its bytes were dropped as they arrived.
    TooLong(u64),
}

/// Feed chunks with [`LineSplitter::feed`], take lines with [`LineSplitter::next_line`]
/// until it returns `None`, then feed the next chunk; [`LineSplitter::finish`] yields a
/// last line without a newline.
pub(super) struct LineSplitter {
    pending: BytesMut,
    /// How far `pending` is known to hold no newline.
    scanned: usize,
    /// The number of the line `pending` starts.
    line: u64,
    max_line_bytes: usize,
    /// The current line passed the cap: drop bytes until its newline.
    skipping: bool,
}

impl LineSplitter {
    pub(super) fn new(max_line_bytes: usize) -> Self {
        LineSplitter {
            pending: BytesMut::new(),
            scanned: 0,
            line: 1,
            max_line_bytes,
            skipping: false,
        }
    }

    pub(super) fn feed(&mut self, chunk: &[u8]) {
        self.pending.extend_from_slice(chunk);
    }

    /// The next complete line of what was fed, if any.
    pub(super) fn next_line(&mut self) -> Option<Line> {
        let newline = self.pending[self.scanned..]
            .iter()
            .position(|&b| b == b'\n');
        let Some(offset) = newline else {
            self.scanned = self.pending.len();
            if self.scanned > self.max_line_bytes {
                // Too long already: free the memory now, report at the newline.
                self.skipping = true;
                self.pending.clear();
                self.scanned = 0;
            }
            return None;
        };
        let end = self.scanned + offset;
        let number = self.line;
        self.line += 1;
        self.scanned = 0;
        if self.skipping || end > self.max_line_bytes {
            self.skipping = false;
            self.pending.advance(end + 1);
            return Some(Line::TooLong(number));
        }
        let text = self.pending.split_to(end);
        self.pending.advance(1);
        Some(Line::Text(number, text))
    }

    /// The last line, when the body does not end with a newline.
    pub(super) fn finish(&mut self) -> Option<Line> {
        let number = self.line;
        if self.skipping {
            self.skipping = false;
            return Some(Line::TooLong(number));
        }
        if self.pending.is_empty() {
            return None;
        }
        if self.pending.len() > self.max_line_bytes {
            self.pending.clear();
            return Some(Line::TooLong(number));
        }
        Some(Line::Text(number, self.pending.split()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]], max: usize) -> Vec<String> {
        let mut splitter = LineSplitter::new(max);
        let mut lines = Vec::new();
        let describe = |line: Line| match line {
            Line::Text(n, text) => format!("{n}:{}", String::from_utf8_lossy(&text)),
            Line::TooLong(n) => format!("{n}:too long"),
        };
        for chunk in chunks {
            splitter.feed(chunk);
            while let Some(line) = splitter.next_line() {
                lines.push(describe(line));
            }
        }
        if let Some(line) = splitter.finish() {
            lines.push(describe(line));
        }
        lines
    }

    #[test]
    fn lines_are_numbered_across_chunk_boundaries() {
        assert_eq!(
            split(&[b"ab", b"c\nd", b"e\n\nf"], 10),
            ["1:abc", "2:de", "3:", "4:f"]
        );
        assert_eq!(split(&[b"x\n"], 10), ["1:x"]);
        assert!(split(&[b""], 10).is_empty());
    }

    #[test]
    fn an_overlong_line_is_reported_once_and_its_bytes_are_not_kept() {
        let mut splitter = LineSplitter::new(4);
        splitter.feed(b"ok\n0123456");
        assert_eq!(splitter.next_line(), Some(Line::Text(1, "ok".into())));
        assert_eq!(splitter.next_line(), None);
        assert!(splitter.pending.is_empty(), "dropped as it arrived");
        splitter.feed(b"789\nnext");
        assert_eq!(splitter.next_line(), Some(Line::TooLong(2)));
        assert_eq!(splitter.finish(), Some(Line::Text(3, "next".into())));
        assert_eq!(split(&[b"a\n12345678"], 4), ["1:a", "2:too long"]);
        assert_eq!(split(&[b"12345\nb"], 4), ["1:too long", "2:b"]);
    }
}
