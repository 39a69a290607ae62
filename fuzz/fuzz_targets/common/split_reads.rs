//! A wire fed to a reader's buffer a few bytes at a time, for the targets
//! whose property is that the reader's answer does not depend on how its
//! input was split into reads.

use bytes::BytesMut;

/// The rest of a wire, handed out `step` bytes per read.
pub struct Reads<'a> {
    wire: &'a [u8],
    step: usize,
}

impl<'a> Reads<'a> {
    /// Reads of `step` bytes (at least one) of `wire`.
    pub fn new(wire: &'a [u8], step: usize) -> Self {
        Reads {
            wire,
            step: step.max(1),
        }
    }

    /// Appends the next read to `buf`; false once the wire is all read.
    pub fn more(&mut self, buf: &mut BytesMut) -> bool {
        if self.wire.is_empty() {
            return false;
        }
        let (next, rest) = self.wire.split_at(self.step.min(self.wire.len()));
        buf.extend_from_slice(next);
        self.wire = rest;
        true
    }
}
