//! The forwarding buffers of a server connection, kept with it between transactions.
//!
//! A transaction needs a buffer for each direction while it is bound. Allocating them per
//! transaction cost two 16 KiB allocations and frees on every transaction; keeping them with
//! the server connection costs 32 KiB per server, and servers are few (the pool size), while an
//! idle client holds no buffer at all.

use bytes::BytesMut;

/// How much each direction reads at a time.
pub const READ_CHUNK: usize = 16 * 1024;

/// A buffer that grew past this (a huge row or parameter) is not kept for the next transaction.
const KEEP_AT_MOST: usize = 4 * READ_CHUNK;

/// The buffers one bound transaction forwards through.
#[derive(Debug, Default)]
pub struct Buffers {
    /// Bytes read from the client, not yet dealt with.
    pub client: BytesMut,
    /// Bytes read from the server, not yet written to the client.
    pub server: BytesMut,
    /// Client bytes rewritten for the server (named prepared statements).
    pub rewritten: BytesMut,
}

impl Buffers {
    /// Empties the buffers for the next transaction; drops any that grew unusually large.
    pub fn recycle(&mut self) {
        for buf in [&mut self.client, &mut self.server, &mut self.rewritten] {
            if buf.capacity() > KEEP_AT_MOST {
                *buf = BytesMut::new();
            } else {
                buf.clear();
            }
        }
    }

    /// Makes room for a read: a whole chunk in a fresh buffer, and at least a quarter of one
    /// after an incomplete message (which then grows the buffer as it arrives).
    pub fn ready_to_read(buf: &mut BytesMut) {
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        } else if buf.capacity() < READ_CHUNK {
            buf.reserve(READ_CHUNK - buf.len());
        }
    }
}

/// Drops the first `n` bytes of `buf`, keeping its allocation (and its start) for reuse.
pub fn drop_front(buf: &mut BytesMut, n: usize) {
    let len = buf.len();
    if n >= len {
        buf.clear();
    } else if n > 0 {
        buf.copy_within(n..len, 0);
        buf.truncate(len - n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_front_keeps_the_rest_in_order() {
        let mut b = BytesMut::from(&b"abcdef"[..]);
        drop_front(&mut b, 2);
        assert_eq!(&b[..], b"cdef");
        drop_front(&mut b, 0);
        assert_eq!(&b[..], b"cdef");
        drop_front(&mut b, 9);
        assert!(b.is_empty());
    }

    #[test]
    fn recycle_keeps_ordinary_buffers_and_drops_huge_ones() {
        let mut bufs = Buffers::default();
        Buffers::ready_to_read(&mut bufs.client);
        bufs.client.extend_from_slice(b"x");
        bufs.server.reserve(KEEP_AT_MOST + 1);
        bufs.recycle();
        assert!(bufs.client.is_empty());
        assert!(
            bufs.client.capacity() >= READ_CHUNK,
            "kept for the next transaction"
        );
        assert_eq!(bufs.server.capacity(), 0, "a huge buffer is not kept");
    }
}
