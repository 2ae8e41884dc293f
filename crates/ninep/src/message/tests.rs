use proptest::collection::vec;
use proptest::prelude::*;

use super::*;
use crate::text::{parse_rframe, parse_tframe};

fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9._' -]{0,12}",
        any::<String>().prop_map(|s| s.chars().take(20).collect()),
    ]
}

fn qid() -> impl Strategy<Value = Qid> {
    (any::<u8>(), any::<u32>(), any::<u64>()).prop_map(|(ty, version, path)| Qid {
        ty,
        version,
        path,
    })
}

fn data() -> impl Strategy<Value = Data> {
    prop_oneof![
        vec(any::<u8>(), 0..64).prop_map(Data::from),
        "[ -~]{0,40}".prop_map(|s| Data::from(s.into_bytes())),
    ]
}

fn stat() -> impl Strategy<Value = Stat> {
    (
        (any::<u16>(), any::<u32>(), qid(), any::<u32>()),
        (any::<u32>(), any::<u32>(), any::<u64>()),
        (string(), string(), string(), string()),
    )
        .prop_map(
            |((ty, dev, qid, mode), (atime, mtime, length), (name, uid, gid, muid))| Stat {
                ty,
                dev,
                qid,
                mode,
                atime,
                mtime,
                length,
                name,
                uid,
                gid,
                muid,
            },
        )
}

fn tmessage() -> impl Strategy<Value = Tmessage> {
    prop_oneof![
        (any::<u32>(), string()).prop_map(|(msize, version)| Tversion { msize, version }.into()),
        (any::<u32>(), string(), string()).prop_map(|(afid, uname, aname)| Tauth {
            afid,
            uname,
            aname
        }
        .into()),
        (any::<u32>(), any::<u32>(), string(), string()).prop_map(|(fid, afid, uname, aname)| {
            Tattach {
                fid,
                afid,
                uname,
                aname,
            }
            .into()
        }),
        any::<u16>().prop_map(|oldtag| Tflush { oldtag }.into()),
        (any::<u32>(), any::<u32>(), vec(string(), 0..=MAXWELEM)).prop_map(
            |(fid, newfid, wnames)| Twalk {
                fid,
                newfid,
                wnames
            }
            .into()
        ),
        (any::<u32>(), any::<u8>()).prop_map(|(fid, mode)| Topen { fid, mode }.into()),
        (any::<u32>(), string(), any::<u32>(), any::<u8>()).prop_map(|(fid, name, perm, mode)| {
            Tcreate {
                fid,
                name,
                perm,
                mode,
            }
            .into()
        }),
        (any::<u32>(), any::<u64>(), any::<u32>()).prop_map(|(fid, offset, count)| Tread {
            fid,
            offset,
            count
        }
        .into()),
        (any::<u32>(), any::<u64>(), data()).prop_map(|(fid, offset, data)| Twrite {
            fid,
            offset,
            data
        }
        .into()),
        any::<u32>().prop_map(|fid| Tclunk { fid }.into()),
        any::<u32>().prop_map(|fid| Tremove { fid }.into()),
        any::<u32>().prop_map(|fid| Tstat { fid }.into()),
        (any::<u32>(), stat()).prop_map(|(fid, s)| Twstat {
            fid,
            stat: WrappedStat(s)
        }
        .into()),
    ]
}

fn rmessage() -> impl Strategy<Value = Rmessage> {
    prop_oneof![
        (any::<u32>(), string()).prop_map(|(msize, version)| Rversion { msize, version }.into()),
        qid().prop_map(|aqid| Rauth { aqid }.into()),
        qid().prop_map(|qid| Rattach { qid }.into()),
        string().prop_map(|ename| Rerror { ename }.into()),
        Just(Rflush {}.into()),
        vec(qid(), 0..=MAXWELEM).prop_map(|wqids| Rwalk { wqids }.into()),
        (qid(), any::<u32>()).prop_map(|(qid, iounit)| Ropen { qid, iounit }.into()),
        (qid(), any::<u32>()).prop_map(|(qid, iounit)| Rcreate { qid, iounit }.into()),
        data().prop_map(|data| Rread { data }.into()),
        any::<u32>().prop_map(|count| Rwrite { count }.into()),
        Just(Rclunk {}.into()),
        Just(Rremove {}.into()),
        stat().prop_map(|s| Rstat {
            stat: WrappedStat(s)
        }
        .into()),
        Just(Rwstat {}.into()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn every_tmessage_round_trips(tag in any::<u16>(), msg in tmessage()) {
        let frame = Tframe { tag, msg };
        let bytes = frame.to_bytes();
        prop_assert_eq!(bytes.len(), frame.byte_size());
        prop_assert_eq!(Tframe::decode(&bytes).unwrap(), frame.clone());
        prop_assert_eq!(parse_tframe(&frame.transcript()).unwrap(), frame);
    }

    #[test]
    fn every_rmessage_round_trips(tag in any::<u16>(), msg in rmessage()) {
        let frame = Rframe { tag, msg };
        let bytes = frame.to_bytes();
        prop_assert_eq!(bytes.len(), frame.byte_size());
        prop_assert_eq!(Rframe::decode(&bytes).unwrap(), frame.clone());
        prop_assert_eq!(parse_rframe(&frame.transcript()).unwrap(), frame);
    }

    #[test]
    fn every_truncation_of_a_frame_is_rejected(tag in any::<u16>(), msg in tmessage(), cut in any::<prop::sample::Index>()) {
        let bytes = Tframe { tag, msg }.to_bytes();
        let cut = cut.index(bytes.len());
        // A shorter buffer whose size field still claims the full length.
        prop_assert!(Tframe::decode(&bytes[..cut]).is_err());
    }

    #[test]
    fn decode_never_panics(bytes in vec(any::<u8>(), 0..300)) {
        let _ = Tframe::decode(&bytes);
        let _ = Rframe::decode(&bytes);
    }
}

#[test]
fn tversion_has_the_manual_layout() {
    let f = Tframe {
        tag: NOTAG,
        msg: Tversion {
            msize: 8192,
            version: "9P2000".into(),
        }
        .into(),
    };
    assert_eq!(
        f.to_bytes(),
        [
            19, 0, 0, 0, 100, 0xff, 0xff, 0x00, 0x20, 0, 0, 6, 0, b'9', b'P', b'2', b'0', b'0',
            b'0'
        ]
    );
}

#[test]
fn a_wrong_size_field_is_rejected() {
    let mut b = Tframe {
        tag: 1,
        msg: Tclunk { fid: 3 }.into(),
    }
    .to_bytes();
    b[0] += 1;
    assert!(matches!(
        Tframe::decode(&b),
        Err(DecodeError::SizeMismatch { .. })
    ));
    b[0] -= 2;
    assert!(matches!(
        Tframe::decode(&b),
        Err(DecodeError::SizeMismatch { .. })
    ));
}

#[test]
fn trailing_bytes_in_a_body_are_rejected() {
    let mut b = Tframe {
        tag: 1,
        msg: Tclunk { fid: 3 }.into(),
    }
    .to_bytes();
    b.push(0);
    b[0] += 1;
    assert_eq!(Tframe::decode(&b), Err(DecodeError::TrailingBytes(1)));
}

#[test]
fn an_unknown_type_is_rejected() {
    for ty in [0u8, 99, 101, 106, 107, 128, 255] {
        let b = [7, 0, 0, 0, ty, 1, 0];
        assert_eq!(Tframe::decode(&b), Err(DecodeError::UnknownType(ty)));
    }
}

#[test]
fn a_size_below_the_header_is_rejected() {
    for size in 0u8..7 {
        let b = [size, 0, 0, 0, 120, 1, 0];
        assert!(matches!(
            FrameHeader::parse(&b),
            Err(DecodeError::SizeMismatch { .. })
        ));
    }
}

#[test]
fn a_string_length_past_the_end_is_rejected() {
    // Tversion whose version string claims 200 bytes.
    let b = [13, 0, 0, 0, 100, 0xff, 0xff, 0, 32, 0, 0, 200, 0];
    assert_eq!(Tframe::decode(&b), Err(DecodeError::Truncated));
}

#[test]
fn a_data_count_past_the_end_is_rejected_before_allocating() {
    // Twrite claiming 4 GiB of data in a 23-byte frame.
    let mut b = vec![23, 0, 0, 0, 118, 1, 0];
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(Tframe::decode(&b), Err(DecodeError::Truncated));
}

#[test]
fn more_than_sixteen_walk_names_are_rejected() {
    let f = Tframe {
        tag: 1,
        msg: Twalk {
            fid: 0,
            newfid: 1,
            wnames: vec!["a".into(); 17],
        }
        .into(),
    };
    assert_eq!(
        Tframe::decode(&f.to_bytes()),
        Err(DecodeError::TooManyWalkElements(17))
    );
    let r = Rframe {
        tag: 1,
        msg: Rwalk {
            wqids: vec![Qid::default(); 17],
        }
        .into(),
    };
    assert_eq!(
        Rframe::decode(&r.to_bytes()),
        Err(DecodeError::TooManyWalkElements(17))
    );
}

#[test]
fn a_stat_with_trailing_bytes_inside_is_rejected() {
    let st = Stat {
        name: "x".into(),
        ..Stat::default()
    };
    let mut body = Vec::new();
    st.encode(&mut body);
    body.push(0xaa);
    // Fix the inner size to include the extra byte, and wrap it for Rstat.
    let inner = (body.len() - 2) as u16;
    body[..2].copy_from_slice(&inner.to_le_bytes());
    let mut frame = Vec::new();
    let size = (HEADER_SIZE + 2 + body.len()) as u32;
    frame.extend_from_slice(&size.to_le_bytes());
    frame.push(125);
    frame.extend_from_slice(&1u16.to_le_bytes());
    frame.extend_from_slice(&(body.len() as u16).to_le_bytes());
    frame.extend_from_slice(&body);
    assert_eq!(Rframe::decode(&frame), Err(DecodeError::TrailingBytes(1)));
}

#[test]
fn payload_debug_and_display_show_only_the_length() {
    let f = Tframe {
        tag: 7,
        msg: Twrite {
            fid: 1,
            offset: 0,
            data: Data::from(&b"hunter2-secret"[..]),
        }
        .into(),
    };
    let debug = format!("{f:?}");
    let display = f.to_string();
    assert!(debug.contains("Data(14 bytes)"), "{debug}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert_eq!(display, "Twrite tag 7 fid 1 offset 0 data <14 bytes>");
    assert!(f.transcript().contains("'hunter2-secret'"));
}

#[test]
fn text_form_matches_the_documented_examples() {
    let lines = [
        "Tversion tag 65535 msize 8192 version '9P2000'",
        "Tattach tag 1 fid 0 afid -1 uname 'glenda' aname ''",
        "Twalk tag 2 fid 0 newfid 1 wname 'lib' 'file'",
        "Tread tag 3 fid 1 offset 0 count 8192",
        "Twrite tag 3 fid 1 offset 0 data x'00ff'",
    ];
    for l in lines {
        assert_eq!(parse_tframe(l).unwrap().transcript(), l);
    }
    let lines = [
        "Rwalk tag 2 wqid (0000000000000002 0 d) (0000000000000003 1)",
        "Rread tag 3 data 'it''s'",
        "Rstat tag 4 stat 'file' 'glenda' 'glenda' '' q (0000000000000003 1) m 0644 at 0 mt 0 l 5 t 0 d 0",
        "Rerror tag 5 ename 'unknown fid'",
        "Rclunk tag 6",
    ];
    for l in lines {
        assert_eq!(parse_rframe(l).unwrap().transcript(), l);
    }
}
