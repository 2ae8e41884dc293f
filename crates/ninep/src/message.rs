//! Every 9P2000 message, the qid and the stat structure, and how a frame is built.
//!
//! Field order and type numbers are those of intro(5) and Plan 9's `fcall.h` (also
//! `include/net/9p/9p.h` in Linux). A frame is `size[4] type[1] tag[2] body`, where size
//! counts the whole frame.

use std::fmt;

use bytes::BufMut;
use zeroize::Zeroizing;

use crate::error::DecodeError;
use crate::wire::{Reader, Wire};
use crate::wire_struct;

/// The tag of Tversion, which is sent before tags are in use (version(5)).
pub const NOTAG: u16 = 0xffff;
/// "No fid": the afid of an attach that does not authenticate (attach(5)).
pub const NOFID: u32 = 0xffff_ffff;
/// At most this many names in one Twalk, and qids in one Rwalk (walk(5)).
pub const MAXWELEM: usize = 16;
/// Bytes of a frame header: size[4] type[1] tag[2].
pub const HEADER_SIZE: usize = 7;
/// Bytes a Tread/Twrite/Rread frame spends on anything but data, rounded up as Plan 9
/// does; `iounit = msize - IOHDRSZ` (read(5), `fcall.h`).
pub const IOHDRSZ: u32 = 24;
/// The version this crate speaks.
pub const VERSION_9P2000: &str = "9P2000";
/// The Rversion answer to a version the server does not speak (version(5)).
pub const VERSION_UNKNOWN: &str = "unknown";

/// Qid type bits (intro(5)).
pub mod qt {
    /// A directory.
    pub const DIR: u8 = 0x80;
    /// An append-only file.
    pub const APPEND: u8 = 0x40;
    /// An exclusive-use file.
    pub const EXCL: u8 = 0x20;
    /// A mounted channel.
    pub const MOUNT: u8 = 0x10;
    /// An authentication file.
    pub const AUTH: u8 = 0x08;
    /// A non-backed-up file.
    pub const TMP: u8 = 0x04;
    /// A plain file.
    pub const FILE: u8 = 0x00;
}

/// Mode bits of a stat and of Tcreate's perm (stat(5)).
pub mod dm {
    /// A directory.
    pub const DIR: u32 = 0x8000_0000;
    /// An append-only file.
    pub const APPEND: u32 = 0x4000_0000;
    /// An exclusive-use file.
    pub const EXCL: u32 = 0x2000_0000;
    /// A mounted channel.
    pub const MOUNT: u32 = 0x1000_0000;
    /// An authentication file.
    pub const AUTH: u32 = 0x0800_0000;
    /// A non-backed-up file.
    pub const TMP: u32 = 0x0400_0000;
    /// Owner may read.
    pub const READ: u32 = 0o400;
    /// Owner may write.
    pub const WRITE: u32 = 0o200;
    /// Owner may execute (search, for a directory).
    pub const EXEC: u32 = 0o100;
}

/// Open modes of Topen and Tcreate (open(5)).
pub mod om {
    /// Open for reading.
    pub const READ: u8 = 0;
    /// Open for writing.
    pub const WRITE: u8 = 1;
    /// Open for reading and writing.
    pub const RDWR: u8 = 2;
    /// Open for execution (permission as for reading plus execute).
    pub const EXEC: u8 = 3;
    /// Truncate the file on open (needs write permission).
    pub const TRUNC: u8 = 0x10;
    /// Remove the file when the fid is clunked.
    pub const RCLOSE: u8 = 0x40;
}

/// The server's unique identification of a file (intro(5)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Qid {
    /// Kind of file: the [`qt`] bits.
    pub ty: u8,
    /// Bumped each time the file changes.
    pub version: u32,
    /// Unique among all files of the server.
    pub path: u64,
}
wire_struct!(Qid { ty, version, path });

impl Qid {
    /// Whether the qid names a directory.
    pub fn is_dir(&self) -> bool {
        self.ty & qt::DIR != 0
    }
}

/// The stat structure of stat(5). On the wire it starts with its own size[2].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stat {
    /// For kernel use.
    pub ty: u16,
    /// For kernel use.
    pub dev: u32,
    /// The file's qid.
    pub qid: Qid,
    /// Permissions and the [`dm`] flags.
    pub mode: u32,
    /// Last read time, seconds since the epoch.
    pub atime: u32,
    /// Last write time, seconds since the epoch.
    pub mtime: u32,
    /// Length of the file in bytes.
    pub length: u64,
    /// Last element of the path.
    pub name: String,
    /// Owner.
    pub uid: String,
    /// Group.
    pub gid: String,
    /// Last modifier.
    pub muid: String,
}

/// The fields of a [`Stat`] after its size[2].
struct StatFields<'a>(&'a Stat);

impl Stat {
    /// A stat with every field "don't touch", as Twstat uses them (stat(5)): a wstat
    /// of this is a request to sync the file.
    pub fn dont_touch() -> Stat {
        Stat {
            ty: u16::MAX,
            dev: u32::MAX,
            qid: Qid {
                ty: u8::MAX,
                version: u32::MAX,
                path: u64::MAX,
            },
            mode: u32::MAX,
            atime: u32::MAX,
            mtime: u32::MAX,
            length: u64::MAX,
            name: String::new(),
            uid: String::new(),
            gid: String::new(),
            muid: String::new(),
        }
    }

    /// Whether every field is "don't touch".
    pub fn is_dont_touch(&self) -> bool {
        *self == Stat::dont_touch()
    }

    fn fields_size(&self) -> usize {
        2 + 4
            + 13
            + 4
            + 4
            + 4
            + 8
            + self.name.byte_size()
            + self.uid.byte_size()
            + self.gid.byte_size()
            + self.muid.byte_size()
    }
}

impl StatFields<'_> {
    fn encode(&self, buf: &mut impl BufMut) {
        let s = self.0;
        s.ty.encode(buf);
        s.dev.encode(buf);
        s.qid.encode(buf);
        s.mode.encode(buf);
        s.atime.encode(buf);
        s.mtime.encode(buf);
        s.length.encode(buf);
        s.name.encode(buf);
        s.uid.encode(buf);
        s.gid.encode(buf);
        s.muid.encode(buf);
    }
}

impl Wire for Stat {
    fn byte_size(&self) -> usize {
        2 + self.fields_size()
    }
    fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u16_le(self.fields_size().min(u16::MAX as usize) as u16);
        StatFields(self).encode(buf);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let size = u16::decode(r)? as usize;
        let mut inner = Reader::new(r.take(size)?);
        let stat = Stat {
            ty: Wire::decode(&mut inner)?,
            dev: Wire::decode(&mut inner)?,
            qid: Wire::decode(&mut inner)?,
            mode: Wire::decode(&mut inner)?,
            atime: Wire::decode(&mut inner)?,
            mtime: Wire::decode(&mut inner)?,
            length: Wire::decode(&mut inner)?,
            name: Wire::decode(&mut inner)?,
            uid: Wire::decode(&mut inner)?,
            gid: Wire::decode(&mut inner)?,
            muid: Wire::decode(&mut inner)?,
        };
        inner.finish()?;
        Ok(stat)
    }
}

/// A stat as Rstat and Twstat carry it: with one more size[2] in front (stat(5) BUGS:
/// "the two sizes are redundant").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WrappedStat(pub Stat);

impl Wire for WrappedStat {
    fn byte_size(&self) -> usize {
        2 + self.0.byte_size()
    }
    fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u16_le(self.0.byte_size().min(u16::MAX as usize) as u16);
        self.0.encode(buf);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let size = u16::decode(r)? as usize;
        let mut inner = Reader::new(r.take(size)?);
        let stat = Stat::decode(&mut inner)?;
        inner.finish()?;
        Ok(WrappedStat(stat))
    }
}

/// The payload of Rread and Twrite: `count[4] data[count]`.
///
/// These bytes are file contents, and in this product file contents are secrets: the
/// buffer is zeroed when dropped, and `Debug` shows only its length.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Data(Zeroizing<Vec<u8>>);

impl Data {
    /// The bytes. Named so that every place that looks at a payload says so.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Number of bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<u8>> for Data {
    fn from(v: Vec<u8>) -> Self {
        Data(Zeroizing::new(v))
    }
}

impl From<Zeroizing<Vec<u8>>> for Data {
    fn from(v: Zeroizing<Vec<u8>>) -> Self {
        Data(v)
    }
}

impl From<&[u8]> for Data {
    fn from(v: &[u8]) -> Self {
        Data(Zeroizing::new(v.to_vec()))
    }
}

impl fmt::Debug for Data {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Data({} bytes)", self.0.len())
    }
}

impl Wire for Data {
    fn byte_size(&self) -> usize {
        4 + self.0.len()
    }
    fn encode(&self, buf: &mut impl BufMut) {
        buf.put_u32_le(self.0.len() as u32);
        buf.put_slice(&self.0);
    }
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let len = u32::decode(r)? as usize;
        // take() fails before we allocate if the count claims more than the frame holds.
        Ok(Data::from(r.take(len)?))
    }
}

/// Defines the message structs, their wire layout, and the T/R enums with their type
/// numbers, from one table.
macro_rules! messages {
    (
        $enum:ident, $frame:ident;
        $( $num:literal $variant:ident $name:ident { $($field:ident : $ty:ty),* $(,)? } $doc:literal; )*
    ) => {
        $(
            #[doc = $doc]
            #[derive(Clone, Debug, Default, PartialEq, Eq)]
            #[allow(missing_docs)] // field meanings are those of the 9P manual page.
            pub struct $name { $(pub $field: $ty),* }
            wire_struct!($name { $($field),* });
            impl From<$name> for $enum {
                fn from(m: $name) -> Self { $enum::$variant(m) }
            }
        )*

        #[doc = concat!("One ", stringify!($enum), " of 9P2000.")]
        #[derive(Clone, Debug, PartialEq, Eq)]
        #[allow(missing_docs)]
        pub enum $enum { $($variant($name)),* }

        impl $enum {
            /// The message type number on the wire.
            pub fn type_number(&self) -> u8 {
                match self { $($enum::$variant(_) => $num),* }
            }

            /// The message name, as in the manual ("Tread", "Rerror", ...).
            pub fn name(&self) -> &'static str {
                match self { $($enum::$variant(_) => stringify!($name)),* }
            }

            /// The name of a type number, if it is one of these messages.
            pub fn name_of(ty: u8) -> Option<&'static str> {
                match ty { $($num => Some(stringify!($name)),)* _ => None }
            }

            fn body_size(&self) -> usize {
                match self { $($enum::$variant(m) => m.byte_size()),* }
            }

            fn encode_body(&self, buf: &mut impl BufMut) {
                match self { $($enum::$variant(m) => m.encode(buf)),* }
            }

            /// Decodes the body of a message of type `ty`; the reader holds exactly the body.
            pub fn decode_body(ty: u8, r: &mut Reader<'_>) -> Result<Self, DecodeError> {
                let msg = match ty {
                    $($num => $enum::$variant($name::decode(r)?),)*
                    _ => return Err(DecodeError::UnknownType(ty)),
                };
                r.finish()?;
                msg.check_limits()?;
                Ok(msg)
            }
        }

        #[doc = concat!("A ", stringify!($enum), " with its tag: what goes on the wire.")]
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub struct $frame {
            /// Matches a reply to its request.
            pub tag: u16,
            /// The message.
            pub msg: $enum,
        }

        impl $frame {
            /// The size of the whole frame on the wire.
            pub fn byte_size(&self) -> usize {
                HEADER_SIZE + self.msg.body_size()
            }

            /// Appends the whole frame, size field included.
            pub fn encode(&self, buf: &mut impl BufMut) {
                buf.put_u32_le(self.byte_size() as u32);
                buf.put_u8(self.msg.type_number());
                buf.put_u16_le(self.tag);
                self.msg.encode_body(buf);
            }

            /// The frame as a new byte vector.
            pub fn to_bytes(&self) -> Vec<u8> {
                let mut v = Vec::with_capacity(self.byte_size());
                self.encode(&mut v);
                v
            }

            /// Decodes one whole frame: `buf` must be exactly the frame, size field
            /// included, and the size field must say so.
            pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
                let header = FrameHeader::parse(buf)?;
                if header.size as usize != buf.len() {
                    return Err(DecodeError::SizeMismatch {
                        declared: header.size,
                        actual: buf.len(),
                    });
                }
                let mut r = Reader::new(&buf[HEADER_SIZE..]);
                let msg = $enum::decode_body(header.ty, &mut r)?;
                Ok($frame { tag: header.tag, msg })
            }
        }
    };
}

messages! {
    Tmessage, Tframe;
    100 Version Tversion { msize: u32, version: String } "Negotiates the protocol version and message size (version(5)).";
    102 Auth Tauth { afid: u32, uname: String, aname: String } "Opens an authentication fid (attach(5)).";
    104 Attach Tattach { fid: u32, afid: u32, uname: String, aname: String } "Connects a fid to the root of a file tree (attach(5)).";
    108 Flush Tflush { oldtag: u16 } "Aborts an outstanding request (flush(5)).";
    110 Walk Twalk { fid: u32, newfid: u32, wnames: Vec<String> } "Walks a new fid down a path from an existing one (walk(5)).";
    112 Open Topen { fid: u32, mode: u8 } "Opens a fid for I/O (open(5)).";
    114 Create Tcreate { fid: u32, name: String, perm: u32, mode: u8 } "Creates and opens a file in a directory (open(5)).";
    116 Read Tread { fid: u32, offset: u64, count: u32 } "Reads from an open fid (read(5)).";
    118 Write Twrite { fid: u32, offset: u64, data: Data } "Writes to an open fid (read(5)).";
    120 Clunk Tclunk { fid: u32 } "Forgets a fid (clunk(5)).";
    122 Remove Tremove { fid: u32 } "Removes a file and clunks its fid (remove(5)).";
    124 Stat Tstat { fid: u32 } "Asks for a file's attributes (stat(5)).";
    126 Wstat Twstat { fid: u32, stat: WrappedStat } "Changes a file's attributes (stat(5)).";
}

messages! {
    Rmessage, Rframe;
    101 Version Rversion { msize: u32, version: String } "The negotiated version and message size.";
    103 Auth Rauth { aqid: Qid } "The qid of the new authentication file.";
    105 Attach Rattach { qid: Qid } "The qid of the root.";
    107 Error Rerror { ename: String } "A request failed; ename says why.";
    109 Flush Rflush { } "The flushed request is gone.";
    111 Walk Rwalk { wqids: Vec<Qid> } "The qid of each name walked.";
    113 Open Ropen { qid: Qid, iounit: u32 } "The open file's qid and the largest I/O that is atomic.";
    115 Create Rcreate { qid: Qid, iounit: u32 } "The new file's qid and iounit.";
    117 Read Rread { data: Data } "The bytes read.";
    119 Write Rwrite { count: u32 } "How many bytes were written.";
    121 Clunk Rclunk { } "The fid is forgotten.";
    123 Remove Rremove { } "The file is removed and the fid forgotten.";
    125 Stat Rstat { stat: WrappedStat } "The file's attributes.";
    127 Wstat Rwstat { } "The attributes are changed.";
}

impl Tmessage {
    /// Limits the generic field types cannot express: walk(5)'s MAXWELEM.
    fn check_limits(&self) -> Result<(), DecodeError> {
        match self {
            Tmessage::Walk(w) if w.wnames.len() > MAXWELEM => {
                Err(DecodeError::TooManyWalkElements(w.wnames.len()))
            }
            _ => Ok(()),
        }
    }

    /// The fid the message is about, for messages that have one.
    pub fn fid(&self) -> Option<u32> {
        match self {
            Tmessage::Version(_) | Tmessage::Flush(_) => None,
            Tmessage::Auth(m) => Some(m.afid),
            Tmessage::Attach(m) => Some(m.fid),
            Tmessage::Walk(m) => Some(m.fid),
            Tmessage::Open(m) => Some(m.fid),
            Tmessage::Create(m) => Some(m.fid),
            Tmessage::Read(m) => Some(m.fid),
            Tmessage::Write(m) => Some(m.fid),
            Tmessage::Clunk(m) => Some(m.fid),
            Tmessage::Remove(m) => Some(m.fid),
            Tmessage::Stat(m) => Some(m.fid),
            Tmessage::Wstat(m) => Some(m.fid),
        }
    }
}

impl Rmessage {
    /// Limits the generic field types cannot express: walk(5)'s MAXWELEM.
    fn check_limits(&self) -> Result<(), DecodeError> {
        match self {
            Rmessage::Walk(w) if w.wqids.len() > MAXWELEM => {
                Err(DecodeError::TooManyWalkElements(w.wqids.len()))
            }
            _ => Ok(()),
        }
    }

    /// An Rerror with the given text.
    pub fn error(ename: impl Into<String>) -> Rmessage {
        Rmessage::Error(Rerror {
            ename: ename.into(),
        })
    }
}

/// The fixed header of every frame, which can be read before the body is trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    /// The size of the whole frame, header included.
    pub size: u32,
    /// The message type number.
    pub ty: u8,
    /// The tag.
    pub tag: u16,
}

impl FrameHeader {
    /// Reads the header from the first [`HEADER_SIZE`] bytes of `buf`. A size smaller
    /// than the header itself is malformed.
    pub fn parse(buf: &[u8]) -> Result<FrameHeader, DecodeError> {
        let mut r = Reader::new(buf);
        let size = u32::decode(&mut r)?;
        let ty = u8::decode(&mut r)?;
        let tag = u16::decode(&mut r)?;
        if (size as usize) < HEADER_SIZE {
            return Err(DecodeError::SizeMismatch {
                declared: size,
                actual: HEADER_SIZE,
            });
        }
        Ok(FrameHeader { size, ty, tag })
    }
}

#[cfg(test)]
mod tests;
