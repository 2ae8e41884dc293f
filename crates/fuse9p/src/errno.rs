//! 9P errors as errnos: the Rerror strings of `ninep::ename` by exact match (they are
//! kept in Plan 9 wording so that clients can do this), the connection's failures as what
//! a program can act on.

use fuser::Errno;
use ninep::client::ClientError;
use ninep::ename;

/// The errno a FUSE request answers for a failed 9P request.
///
/// A server that went away is `ENOTCONN` ("Transport endpoint is not connected"), which is
/// also what a FUSE mount whose server died gives; a Rerror the table does not know is
/// `EIO`, never a guess.
pub fn errno_of(e: &ClientError) -> Errno {
    match e {
        ClientError::Remote(text) => remote(text),
        ClientError::Disconnected | ClientError::Io(_) => Errno::ENOTCONN,
        ClientError::Protocol(_) | ClientError::TooLong { .. } => Errno::EIO,
        _ => Errno::EIO,
    }
}

fn remote(text: &str) -> Errno {
    match text {
        ename::NOT_FOUND => Errno::ENOENT,
        ename::PERMISSION_DENIED => Errno::EACCES,
        ename::NOT_A_DIRECTORY => Errno::ENOTDIR,
        ename::IS_A_DIRECTORY => Errno::EISDIR,
        ename::BAD_NAME => Errno::EINVAL,
        ename::EXISTS => Errno::EEXIST,
        ename::CREATE_PROHIBITED | ename::REMOVE_PROHIBITED | ename::WSTAT_PROHIBITED => {
            Errno::EROFS
        }
        ename::TOO_MANY_FIDS => Errno::EMFILE,
        ename::TOO_MANY_REQUESTS => Errno::EAGAIN,
        _ => Errno::EIO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan9_strings_map_to_their_errnos() {
        let r = |s: &str| errno_of(&ClientError::Remote(s.into())).code();
        assert_eq!(r("file does not exist"), Errno::ENOENT.code());
        assert_eq!(r("permission denied"), Errno::EACCES.code());
        assert_eq!(r("not a directory"), Errno::ENOTDIR.code());
        assert_eq!(r("too many fids on this connection"), Errno::EMFILE.code());
        // Unknown text, and text that merely contains a known one: EIO, not a guess.
        assert_eq!(r("file does not exist, or does it"), Errno::EIO.code());
        assert_eq!(r("something else"), Errno::EIO.code());
    }

    #[test]
    fn a_lost_server_is_not_connected() {
        assert_eq!(
            errno_of(&ClientError::Disconnected).code(),
            Errno::ENOTCONN.code()
        );
        let io = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        assert_eq!(
            errno_of(&ClientError::Io(io)).code(),
            Errno::ENOTCONN.code()
        );
        let p = ClientError::Protocol("x".into());
        assert_eq!(errno_of(&p).code(), Errno::EIO.code());
    }
}
