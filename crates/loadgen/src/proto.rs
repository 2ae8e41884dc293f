//! What the load client says: the request sequences of each workload, in each dialect,
//! encoded once before the load starts, and the check of each reply.
//!
//! A [`Target`] says, per server, whom to attach as, with which aname, and where the
//! file is under the attach root, so that the same workload runs against servers that
//! lay out their trees differently (the ramfs example's `file` and srv-secrets'
//! `secret/x`; `srv-secrets/benches/load.rs` shares this module).
//!
//! Messages that 9P2000 and 9P2000.L share byte for byte (Tversion, Twalk, Tread,
//! Tclunk) are encoded with ninep's codec for both dialects. The two 9P2000.L messages
//! whose layout differs, Tattach (one more field) and Tlopen (its own type), and the
//! replies Rlopen and Rlerror, are written here by hand: ninep speaks 9P2000 only, and
//! diod speaks 9P2000.L only. Layouts from Linux `include/net/9p/9p.h` and
//! `net/9p/client.c` (`p9_client_attach`, `p9_client_open`).

use bytes::BufMut;
use ninep::{
    FrameHeader, HEADER_SIZE, NOFID, NOTAG, Rframe, Rmessage, Tattach, Tclunk, Tframe, Tmessage,
    Topen, Tread, Tversion, Twalk, om,
};

/// The file every workload reads in the ninep bench, in the root of every server.
pub const FILE_NAME: &str = "file";
/// Its size: small, so that the benchmark measures the server core, not copying.
pub const FILE_SIZE: u32 = 64;
/// The msize asked for: every message of the workloads fits.
pub const MSIZE: u32 = 8192;

/// The only tag in use after Tversion: each connection has one request outstanding.
const TAG: u16 = 1;
/// The fid of the connection's root, attached at setup.
const ROOT_FID: u32 = 0;
/// The fid each operation works on.
const FID: u32 = 1;

/// Reply type numbers (intro(5); `9p.h` for the 9P2000.L ones).
const RVERSION: u8 = 101;
const RATTACH: u8 = 105;
const RERROR: u8 = 107;
const RWALK: u8 = 111;
const ROPEN: u8 = 113;
const RREAD: u8 = 117;
const RCLUNK: u8 = 121;
/// 9P2000.L: `Rlerror ecode[4]`.
const RLERROR: u8 = 7;
/// 9P2000.L: `Tlopen fid[4] flags[4]`.
const TLOPEN: u8 = 12;
/// 9P2000.L: `Rlopen qid[13] iounit[4]`.
const RLOPEN: u8 = 13;
/// 9P2000.L attach: "no numeric uname", so the server goes by the uname string.
const NONUNAME: u32 = u32::MAX;

/// The protocol a server speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// Plain 9P2000: ours and the echo server.
    P9,
    /// 9P2000.L: diod.
    Linux,
}

impl Dialect {
    fn version(self) -> &'static str {
        match self {
            Dialect::P9 => "9P2000",
            Dialect::Linux => "9P2000.L",
        }
    }
}

/// The three measured operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// Walk a new fid to the file, open it, read it, clunk it: four round trips.
    OpenReadClunk,
    /// Tread at offset 0 on a fid opened once at setup: one round trip.
    ReadHeld,
    /// Tattach a new fid, then Tclunk it: two round trips.
    Attach,
}

impl Workload {
    /// Every workload, in report order.
    pub const ALL: [Workload; 3] = [
        Workload::ReadHeld,
        Workload::OpenReadClunk,
        Workload::Attach,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Workload::OpenReadClunk => "open-read-clunk",
            Workload::ReadHeld => "read-held",
            Workload::Attach => "attach",
        }
    }
}

/// What a reply must be, beyond its type and tag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// Nothing more.
    Type,
    /// An Rversion naming this version.
    Version(&'static str),
    /// An Rread of exactly this many bytes.
    ReadCount(u32),
    /// An Rwalk of exactly this many qids: every name walked, so the new fid exists.
    WalkQids(u16),
}

/// One request, encoded, and what its reply must be.
#[derive(Clone, Debug)]
pub struct Step {
    /// The whole request frame.
    pub request: Vec<u8>,
    /// The type number of a successful reply.
    pub reply_type: u8,
    /// The tag the reply must carry.
    pub tag: u16,
    /// More that the reply must satisfy.
    pub check: Check,
}

/// A workload in one dialect: what a connection sends once, then what it repeats.
#[derive(Clone, Debug)]
pub struct Plan {
    /// Sent once per connection, before the clock starts.
    pub setup: Vec<Step>,
    /// One operation: the latency measured is that of the whole sequence.
    pub op: Vec<Step>,
}

/// Who the client attaches as, to what, and which file it reads there.
#[derive(Clone, Debug)]
pub struct Target {
    /// The uname of Tattach.
    pub uname: String,
    /// The aname of Tattach: diod wants the export path; srv-secrets a service's name.
    pub aname: String,
    /// 9P2000.L's n_uname: the numeric user, or none.
    pub n_uname: Option<u32>,
    /// The file's path from the attach root, one name per element: one Twalk walks it.
    /// The file holds [`FILE_SIZE`] bytes.
    pub path: Vec<String>,
}

fn framed(tag: u16, msg: impl Into<Tmessage>) -> Vec<u8> {
    Tframe {
        tag,
        msg: msg.into(),
    }
    .to_bytes()
}

/// A 9P2000.L frame built by hand: `size[4] type[1] tag[2] body`.
fn framed_l(ty: u8, tag: u16, body: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut buf = vec![0; 4];
    buf.put_u8(ty);
    buf.put_u16_le(tag);
    body(&mut buf);
    let size = (buf.len() as u32).to_le_bytes();
    buf[..4].copy_from_slice(&size);
    buf
}

fn put_str(buf: &mut Vec<u8>, s: &str) {
    buf.put_u16_le(s.len() as u16);
    buf.put_slice(s.as_bytes());
}

fn step(request: Vec<u8>, reply_type: u8) -> Step {
    Step {
        request,
        reply_type,
        tag: TAG,
        check: Check::Type,
    }
}

fn attach(dialect: Dialect, fid: u32, who: &Target) -> Step {
    let request = match dialect {
        Dialect::P9 => framed(
            TAG,
            Tattach {
                fid,
                afid: NOFID,
                uname: who.uname.clone(),
                aname: who.aname.clone(),
            },
        ),
        // 9P2000.L (and .u): `Tattach fid[4] afid[4] uname[s] aname[s] n_uname[4]`.
        Dialect::Linux => framed_l(104, TAG, |b| {
            b.put_u32_le(fid);
            b.put_u32_le(NOFID);
            put_str(b, &who.uname);
            put_str(b, &who.aname);
            b.put_u32_le(who.n_uname.unwrap_or(NONUNAME));
        }),
    };
    step(request, RATTACH)
}

fn walk_to_file(who: &Target) -> Step {
    Step {
        check: Check::WalkQids(who.path.len() as u16),
        ..step(
            framed(
                TAG,
                Twalk {
                    fid: ROOT_FID,
                    newfid: FID,
                    wnames: who.path.clone(),
                },
            ),
            RWALK,
        )
    }
}

fn open(dialect: Dialect) -> Step {
    match dialect {
        Dialect::P9 => step(
            framed(
                TAG,
                Topen {
                    fid: FID,
                    mode: om::READ,
                },
            ),
            ROPEN,
        ),
        // Linux open(2) flags: O_RDONLY is 0.
        Dialect::Linux => step(
            framed_l(TLOPEN, TAG, |b| {
                b.put_u32_le(FID);
                b.put_u32_le(0);
            }),
            RLOPEN,
        ),
    }
}

fn read() -> Step {
    Step {
        check: Check::ReadCount(FILE_SIZE),
        ..step(
            framed(
                TAG,
                Tread {
                    fid: FID,
                    offset: 0,
                    count: FILE_SIZE,
                },
            ),
            RREAD,
        )
    }
}

fn clunk() -> Step {
    step(framed(TAG, Tclunk { fid: FID }), RCLUNK)
}

/// The requests of `workload` in `dialect`, encoded.
pub fn plan(dialect: Dialect, workload: Workload, who: &Target) -> Plan {
    let version = Step {
        request: framed(
            NOTAG,
            Tversion {
                msize: MSIZE,
                version: dialect.version().to_string(),
            },
        ),
        reply_type: RVERSION,
        tag: NOTAG,
        check: Check::Version(dialect.version()),
    };
    let mut setup = vec![version, attach(dialect, ROOT_FID, who)];
    let op = match workload {
        Workload::OpenReadClunk => vec![walk_to_file(who), open(dialect), read(), clunk()],
        Workload::ReadHeld => {
            setup.extend([walk_to_file(who), open(dialect)]);
            vec![read()]
        }
        Workload::Attach => vec![attach(dialect, FID, who), clunk()],
    };
    Plan { setup, op }
}

/// Checks a whole reply frame against what `step` expects. The error says what came
/// instead, server error strings and errnos included.
pub fn check_reply(step: &Step, reply: &[u8]) -> Result<(), String> {
    let header = FrameHeader::parse(reply).map_err(|e| format!("bad reply header: {e}"))?;
    if header.tag != step.tag {
        return Err(format!(
            "reply tag {} to request tag {}",
            header.tag, step.tag
        ));
    }
    if header.ty == RERROR {
        return Err(match Rframe::decode(reply) {
            Ok(Rframe {
                msg: Rmessage::Error(e),
                ..
            }) => format!("Rerror {:?}", e.ename),
            _ => "malformed Rerror".to_string(),
        });
    }
    if header.ty == RLERROR {
        return Err(match reply.get(HEADER_SIZE..HEADER_SIZE + 4) {
            Some(b) => format!(
                "Rlerror errno {}",
                u32::from_le_bytes([b[0], b[1], b[2], b[3]])
            ),
            None => "malformed Rlerror".to_string(),
        });
    }
    if header.ty != step.reply_type {
        return Err(format!(
            "reply type {} where {} was expected",
            header.ty, step.reply_type
        ));
    }
    match &step.check {
        Check::Type => Ok(()),
        Check::Version(v) => match Rframe::decode(reply) {
            Ok(Rframe {
                msg: Rmessage::Version(r),
                ..
            }) if r.version == *v => Ok(()),
            Ok(Rframe {
                msg: Rmessage::Version(r),
                ..
            }) => Err(format!("server answered version {:?} to {v:?}", r.version)),
            _ => Err("malformed Rversion".to_string()),
        },
        Check::ReadCount(n) => {
            // Rread: count[4] right after the header; the frame must hold that many bytes.
            let count = reply
                .get(HEADER_SIZE..HEADER_SIZE + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
            match count {
                Some(c) if c == *n && reply.len() == HEADER_SIZE + 4 + c as usize => Ok(()),
                Some(c) => Err(format!("Rread of {c} bytes where {n} were expected")),
                None => Err("malformed Rread".to_string()),
            }
        }
        Check::WalkQids(n) => {
            // Rwalk: nwqid[2] right after the header, then 13 bytes per qid. Fewer qids
            // than names is a failed walk that 9P answers with Rwalk, not Rerror.
            let count = reply
                .get(HEADER_SIZE..HEADER_SIZE + 2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]));
            match count {
                Some(c) if c == *n && reply.len() == HEADER_SIZE + 2 + 13 * c as usize => Ok(()),
                Some(c) => Err(format!("Rwalk of {c} qids where {n} were expected")),
                None => Err("malformed Rwalk".to_string()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

    use super::*;
    use ninep::{Qid, Rattach, Rread, Rversion, Rwalk, Tframe};

    fn who() -> Target {
        Target {
            uname: "u".into(),
            aname: "/x".into(),
            n_uname: Some(7),
            path: vec![FILE_NAME.into()],
        }
    }

    #[test]
    fn shared_messages_decode_with_ninep_in_both_dialects() {
        for dialect in [Dialect::P9, Dialect::Linux] {
            let p = plan(dialect, Workload::OpenReadClunk, &who());
            let version = Tframe::decode(&p.setup[0].request).unwrap();
            assert_eq!(
                version.msg,
                Tmessage::Version(Tversion {
                    msize: MSIZE,
                    version: dialect.version().into()
                })
            );
            for i in [0, 2, 3] {
                Tframe::decode(&p.op[i].request).unwrap();
            }
        }
    }

    #[test]
    fn linux_attach_has_n_uname_after_aname() {
        let p = plan(Dialect::Linux, Workload::Attach, &who());
        let b = &p.op[0].request;
        // size type tag fid afid uname[s]="u" aname[s]="/x" n_uname
        assert_eq!(b.len(), 7 + 4 + 4 + 3 + 4 + 4);
        assert_eq!(&b[..4], &(b.len() as u32).to_le_bytes());
        assert_eq!(b[4], 104);
        assert_eq!(&b[7..11], &1u32.to_le_bytes());
        assert_eq!(&b[11..15], &NOFID.to_le_bytes());
        assert_eq!(&b[15..18], &[1, 0, b'u']);
        assert_eq!(&b[18..22], &[2, 0, b'/', b'x']);
        assert_eq!(&b[22..26], &7u32.to_le_bytes());
    }

    #[test]
    fn linux_open_is_tlopen_read_only() {
        let p = plan(Dialect::Linux, Workload::ReadHeld, &who());
        let lopen = &p.setup[3];
        assert_eq!(
            lopen.request,
            [15, 0, 0, 0, TLOPEN, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(lopen.reply_type, RLOPEN);
        // A plain 9P2000 attach has no n_uname: ninep decodes it whole.
        let p = plan(Dialect::P9, Workload::Attach, &who());
        assert!(matches!(
            Tframe::decode(&p.op[0].request).unwrap().msg,
            Tmessage::Attach(_)
        ));
    }

    #[test]
    fn replies_are_checked() {
        let p = plan(Dialect::P9, Workload::ReadHeld, &who());
        let rread = |n: usize| {
            Rframe {
                tag: TAG,
                msg: Rread {
                    data: vec![0; n].into(),
                }
                .into(),
            }
            .to_bytes()
        };
        let read = &p.op[0];
        assert_eq!(check_reply(read, &rread(FILE_SIZE as usize)), Ok(()));
        assert!(
            check_reply(read, &rread(3))
                .unwrap_err()
                .contains("3 bytes")
        );
        let err = Rframe {
            tag: TAG,
            msg: Rmessage::error("nope"),
        }
        .to_bytes();
        assert!(check_reply(read, &err).unwrap_err().contains("nope"));
        let lerr = [11, 0, 0, 0, RLERROR, 1, 0, 13, 0, 0, 0];
        assert_eq!(check_reply(read, &lerr), Err("Rlerror errno 13".into()));
        let wrong_tag = Rframe {
            tag: 9,
            msg: Rattach::default().into(),
        }
        .to_bytes();
        assert!(check_reply(read, &wrong_tag).unwrap_err().contains("tag 9"));
        let version = &p.setup[0];
        let rversion = |v: &str| {
            Rframe {
                tag: NOTAG,
                msg: Rversion {
                    msize: MSIZE,
                    version: v.into(),
                }
                .into(),
            }
            .to_bytes()
        };
        assert_eq!(check_reply(version, &rversion("9P2000")), Ok(()));
        assert!(check_reply(version, &rversion("unknown")).is_err());
    }

    #[test]
    fn the_walk_takes_the_whole_path_and_must_reach_its_end() {
        let deep = Target {
            path: vec!["secret".into(), "x".into()],
            ..who()
        };
        let p = plan(Dialect::P9, Workload::ReadHeld, &deep);
        let walk = &p.setup[2];
        match Tframe::decode(&walk.request).unwrap().msg {
            Tmessage::Walk(w) => {
                assert_eq!((w.fid, w.newfid), (ROOT_FID, FID));
                assert_eq!(w.wnames, ["secret", "x"]);
            }
            other => panic!("not a walk: {other:?}"),
        }
        let qid = |path| Qid {
            ty: 0,
            version: 0,
            path,
        };
        let rwalk = |n: u64| {
            Rframe {
                tag: TAG,
                msg: Rwalk {
                    wqids: (0..n).map(qid).collect(),
                }
                .into(),
            }
            .to_bytes()
        };
        assert_eq!(check_reply(walk, &rwalk(2)), Ok(()));
        // A walk that stops at `secret` (no `x` there) is an Rwalk of one qid.
        assert!(check_reply(walk, &rwalk(1)).unwrap_err().contains("1 qids"));
        assert!(check_reply(walk, &rwalk(0)).is_err());
        let p = plan(Dialect::P9, Workload::OpenReadClunk, &who());
        assert_eq!(check_reply(&p.op[0], &rwalk(1)), Ok(()));
    }
}
