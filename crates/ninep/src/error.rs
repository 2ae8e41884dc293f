//! Errors of the codec, and the error strings the server sends.
//!
//! Clients turn an Rerror's text into an errno: Linux by exact match against the table in
//! `net/9p/error.c`, plan9port's 9pfuse by substring. So the strings are fixed constants in
//! Plan 9's wording, chosen where possible from those both tables know.

use thiserror::Error;

/// Why a frame could not be decoded.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// A string is not UTF-8 (intro(5) requires it).
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    /// The size field disagrees with the bytes of the frame.
    #[error("size field says {declared} bytes, frame has {actual}")]
    SizeMismatch {
        /// What the size field said.
        declared: u32,
        /// What there was.
        actual: usize,
    },
    /// A Twalk or Rwalk holds more than MAXWELEM elements.
    #[error("walk of {0} elements; the limit is 16")]
    TooManyWalkElements(usize),
    /// The message has bytes after its last field.
    #[error("{0} trailing bytes after the last field")]
    TrailingBytes(usize),
    /// A field or count runs past the end of the frame.
    #[error("message truncated: a field runs past the end of the frame")]
    Truncated,
    /// The type number is not a message of this direction.
    #[error("unknown message type {0}")]
    UnknownType(u8),
}

/// The Rerror strings of the server core and of filesystems built on it.
///
/// Each is Plan 9's wording (lib9p `srv.c`, the Plan 9 kernel's `error.h`); the comment
/// says what Linux maps it to, where it does.
pub mod ename {
    /// walk(5), open(5), ...: no such file; also the answer for a file the caller may
    /// not know of. Linux: ENOENT.
    pub const NOT_FOUND: &str = "file does not exist";
    /// The caller may not do this. Linux: EACCES.
    pub const PERMISSION_DENIED: &str = "permission denied";
    /// The fid is not in use on this connection (lib9p).
    pub const UNKNOWN_FID: &str = "unknown fid";
    /// Tattach, Tauth or Twalk named a newfid that is already in use.
    pub const FID_IN_USE: &str = "fid in use";
    /// A request used a tag that is still outstanding (lib9p).
    pub const DUPLICATE_TAG: &str = "duplicate tag";
    /// A request that the protocol does not allow in this state (lib9p).
    pub const BOTCH: &str = "9P protocol botch";
    /// A message other than Tversion came first.
    pub const NO_VERSION: &str = "9P protocol botch: Tversion must come first";
    /// Tversion asked for an msize below the server's minimum.
    pub const MSIZE_TOO_SMALL: &str = "msize too small: at least 4096 bytes";
    /// Twalk from a file that is not a directory. Linux: ENOTDIR.
    pub const NOT_A_DIRECTORY: &str = "not a directory";
    /// Twalk of a fid that is open (walk(5): "fid must not have been opened").
    pub const WALK_OPEN_FID: &str = "cannot clone open fid";
    /// A directory opened for writing, truncation or removal on close (lib9p).
    pub const IS_A_DIRECTORY: &str = "is a directory";
    /// Topen or Tcreate of a fid that is already open.
    pub const ALREADY_OPEN: &str = "file already open for I/O";
    /// Tread or Twrite of a fid that is not open, or not open for that (lib9p Ebotch).
    pub const NOT_OPEN: &str = "9P protocol botch: fid not open for this I/O";
    /// A directory read at an offset other than 0 or the end of the previous read.
    /// Linux: ESPIPE.
    pub const BAD_OFFSET: &str = "bad offset in directory read";
    /// A directory read at offset 0 whose count cannot hold even the first entry.
    pub const COUNT_TOO_SMALL: &str = "read count too small for a directory entry";
    /// Tcreate in a file that is not a directory (lib9p).
    pub const CREATE_NON_DIR: &str = "create in non-directory";
    /// The filesystem does not create files (lib9p).
    pub const CREATE_PROHIBITED: &str = "create prohibited";
    /// The filesystem does not remove files (lib9p).
    pub const REMOVE_PROHIBITED: &str = "remove prohibited";
    /// The filesystem does not change attributes (lib9p). Linux: EPERM.
    pub const WSTAT_PROHIBITED: &str = "wstat prohibited";
    /// A name that already exists. Linux: EEXIST.
    pub const EXISTS: &str = "file already exists";
    /// A Twstat that would turn a file into a directory or back. Linux: EPERM.
    pub const WSTAT_DIR_CHANGE: &str = "wstat can't convert between files and directories";
    /// Tauth on a server that needs no authentication.
    pub const NO_AUTH: &str = "authentication not required";
    /// Tattach without an afid on a connection that must prove who it is with a
    /// credential (Tauth, the credential written to the afid, Tattach with it).
    pub const AUTH_REQUIRED: &str =
        "authentication required: Tauth, write the credential to the afid, then Tattach with it";
    /// Tattach whose afid is a fid, not an authentication fid.
    pub const NOT_AN_AFID: &str = "afid is not an authentication fid";
    /// Tattach, or a write, on an afid an attach already used (each afid serves one).
    pub const AFID_SPENT: &str = "authentication fid already used: make another with Tauth";
    /// Tattach naming another uname or aname than the Tauth of its afid.
    pub const AFID_MISMATCH: &str = "authentication fid was made for another uname or aname";
    /// A request other than read, write or clunk on an authentication fid.
    pub const AFID_MISUSED: &str = "not allowed on an authentication fid";
    /// More authentication fids at once than a connection may hold.
    pub const TOO_MANY_AFIDS: &str = "too many authentication fids on this connection: clunk one";
    /// More written to an authentication fid than a credential may hold.
    pub const CREDENTIAL_TOO_LONG: &str = "credential too long";
    /// More attaches with a credential than one connection may make.
    pub const TOO_MANY_CREDENTIALS: &str = "too many attaches with a credential on this connection";
    /// An attach whose credential proves another principal than the connection's.
    pub const ANOTHER_PRINCIPAL: &str =
        "the connection is authenticated as another principal: connect again for this one";
    /// More fids than the connection may hold.
    pub const TOO_MANY_FIDS: &str = "too many fids on this connection";
    /// More outstanding requests than the connection may have.
    pub const TOO_MANY_REQUESTS: &str = "too many outstanding requests on this connection";
    /// The filesystem failed in a way it does not explain to clients. Linux: EIO.
    pub const IO: &str = "i/o error";
    /// What an open file read was cut off from: fossil's string, which Linux maps to
    /// EIDRM ("Identifier removed") and so says plainly that opening again is the cure.
    pub const REMOVED: &str = "file has been removed";
    /// A malformed message; the text after the colon says what was wrong with it.
    pub const BAD_MESSAGE: &str = "bad message";
    /// A name that cannot be a path element. Linux: ENOENT.
    pub const BAD_NAME: &str = "illegal path element";
    /// A read that waited for its data when the server shut down (Plan 9's Eshutdown).
    /// Linux does not know it (ESERVERFAULT, "Unknown error 526").
    pub const SHUT_DOWN: &str = "device shut down";
}

/// A filesystem handler's error: the text of the Rerror the client gets.
///
/// Handlers answer with one of the [`ename`] constants, or a text of their own for
/// errors that only their clients need to understand (a ctl command's complaint).
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("{0}")]
pub struct Error(pub String);

impl Error {
    /// An error with the given Rerror text.
    pub fn new(ename: impl Into<String>) -> Error {
        Error(ename.into())
    }

    /// "file does not exist".
    pub fn not_found() -> Error {
        Error::new(ename::NOT_FOUND)
    }

    /// "permission denied".
    pub fn permission_denied() -> Error {
        Error::new(ename::PERMISSION_DENIED)
    }

    /// The Rerror text.
    pub fn ename(&self) -> &str {
        &self.0
    }
}

impl From<&'static str> for Error {
    fn from(s: &'static str) -> Self {
        Error::new(s)
    }
}

/// What a handler returns.
pub type Result<T, E = Error> = std::result::Result<T, E>;
