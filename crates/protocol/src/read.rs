//! A bounds-checked cursor over a message body, shared by all decoders.
//!
//! Every read returns an error naming the message instead of panicking, which is what makes the
//! decoders safe on hostile input.

use crate::error::ProtocolError;

pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    message: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8], message: &'static str) -> Self {
        Reader {
            buf,
            pos: 0,
            message,
        }
    }

    fn truncated(&self) -> ProtocolError {
        ProtocolError::malformed(self.message, "message body is truncated")
    }

    /// Offset of the next unread byte from the start of the body.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    pub(crate) fn rest(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], ProtocolError> {
        let end = self.pos.checked_add(n).ok_or_else(|| self.truncated())?;
        let out = self
            .buf
            .get(self.pos..end)
            .ok_or_else(|| self.truncated())?;
        self.pos = end;
        Ok(out)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], ProtocolError> {
        let b = self.bytes(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, ProtocolError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn i16(&mut self) -> Result<i16, ProtocolError> {
        Ok(i16::from_be_bytes(self.array()?))
    }

    pub(crate) fn i32(&mut self) -> Result<i32, ProtocolError> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, ProtocolError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// A NUL-terminated byte string, without the terminator.
    pub(crate) fn cstr_bytes(&mut self) -> Result<&'a [u8], ProtocolError> {
        let rest = self.rest();
        let nul = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(ProtocolError::Malformed {
                message: self.message,
                reason: "string is not NUL-terminated",
            })?;
        self.pos += nul + 1;
        Ok(&rest[..nul])
    }

    /// A NUL-terminated UTF-8 string.
    pub(crate) fn cstr(&mut self, field: &'static str) -> Result<&'a str, ProtocolError> {
        let b = self.cstr_bytes()?;
        std::str::from_utf8(b).map_err(|_| ProtocolError::InvalidUtf8 {
            message: self.message,
            field,
        })
    }

    /// Errors unless every byte has been read: trailing garbage means a framing mistake.
    pub(crate) fn finish(&self) -> Result<(), ProtocolError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(ProtocolError::malformed(
                self.message,
                "unexpected bytes after the last field",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_bounds() {
        let mut r = Reader::new(b"ab\0\x00\x00\x00\x07z", "Test");
        assert_eq!(r.cstr("f").unwrap(), "ab");
        assert_eq!(r.i32().unwrap(), 7);
        assert!(r.finish().is_err());
        assert_eq!(r.u8().unwrap(), b'z');
        assert!(r.u8().is_err());
        assert!(r.cstr_bytes().is_err());
        r.finish().unwrap();
        assert!(Reader::new(b"x", "T").bytes(usize::MAX).is_err());
    }
}
