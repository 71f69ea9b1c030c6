//! Tests of the datagram codec: round trips, truncations and hostile inputs.

use super::*;

fn sample_pace() -> Pace {
    Pace {
        xfer: 9,
        rate: 50_000_000,
        rtt_us: 400,
        interval_us: 2000,
        clr: 0x1234,
        backlog_us: 77,
        uni: 3,
        flags: 0,
        echo: 0x77,
        echo_ts: 123,
        echo_hold_us: 9,
    }
}

fn sample_feedback() -> Feedback {
    Feedback {
        xfer: 9,
        flags: FB_CLR,
        seen: 123_456,
        hold_us: 12,
        loss: u32::MAX / 100,
        recv_rate: 12_500_000,
        overflows: 4,
        ts_us: 0xdead_beef,
    }
}

fn hdr() -> Header {
    Header {
        version: VERSION,
        kind: 0,
        flags: 0,
        key_id: 0,
        cluster: 0x1234,
        node: 0xdead_beef_0102_0304,
        seq: 99,
    }
}

#[track_caller]
fn round_trip(m: Msg<'_>) {
    let mut buf = [0u8; MAX_DATAGRAM];
    let n = m.encode(&hdr(), &mut buf);
    let (h, back) = decode(&buf[..n]).expect("decodes");
    assert_eq!(h.node, hdr().node);
    assert_eq!(h.seq, 99);
    assert_eq!(h.kind, m.kind());
    assert_eq!(back, m);
    for cut in 0..n {
        // Any truncation is an error or a different valid message, never a panic.
        let _ = decode(&buf[..cut]);
    }
}

#[test]
fn every_message_round_trips() {
    let mut known = [0u8; 64];
    let mut c = Cursor::new(&mut known);
    c.u64(7);
    write_addr(&mut c, &"127.0.0.1:4000".parse().unwrap());
    c.u32(10);
    c.u8(HB_RECEIVER);
    c.bytes8(b"web2");
    let kl = c.len();
    round_trip(Msg::Heartbeat(Heartbeat {
        flags: HB_JOIN,
        proto_min: 1,
        proto_max: 1,
        interval_ms: 1000,
        name: b"web1",
        version: b"0.1.0",
        info: b"x",
        known_raw: &known[..kl],
        known_count: 1,
    }));
    round_trip(Msg::Leave);
    round_trip(Msg::Announce(Announce {
        xfer: 5,
        block: 1436,
        group: 128,
        parity: 256,
        manifest_len: 12345,
        total: 3,
        first: 2,
        targets_raw: &[0, 0, 0, 0, 0, 0, 0, 9],
        pending: &[1],
    }));
    round_trip(Msg::Block {
        xfer: 1,
        stream: Stream::Payload,
        idx: 0x00ab_cdef,
        data: b"hello",
    });
    round_trip(Msg::Parity {
        xfer: 1,
        stream: Stream::Manifest,
        group: 3,
        index: 4,
        data: b"ab",
    });
    round_trip(Msg::Poll {
        xfer: 1,
        round: 2,
        pending: &[3],
    });
    round_trip(Msg::Report {
        xfer: 1,
        part: 0,
        parts: 2,
        data: b"rep",
    });
    let mut w = Writer::new();
    let e1 = NakEntry {
        stream: Stream::Payload,
        group: 300,
        need: 3,
        missing: &[0b1000_0101, 0, 0x40],
    };
    let e2 = NakEntry {
        stream: Stream::Plan,
        group: 0,
        need: 1,
        missing: &[],
    };
    e1.write(&mut w);
    e2.write(&mut w);
    let raw = w.into_vec();
    assert_eq!(raw.len(), e1.encoded_len() + e2.encoded_len());
    round_trip(Msg::Nak {
        xfer: 1,
        round: 3,
        flags: NAK_FINAL,
        seen: 1 << 40,
        hold_us: 77,
        entries: &raw,
    });
    let back: Vec<NakEntry<'_>> = naks(&raw).collect();
    assert_eq!(back, vec![e1, e2]);
    assert!(e1.lacks(0) && e1.lacks(2) && e1.lacks(7) && e1.lacks(22));
    assert!(!e1.lacks(1) && !e1.lacks(8) && !e1.lacks(23) && !e1.lacks(1000));
    assert!(e2.lacks(5), "an empty map means every block");
    round_trip(Msg::Pace(sample_pace()));
    round_trip(Msg::Feedback(sample_feedback()));
    round_trip(Msg::Commit {
        xfer: 1,
        flags: COMMIT_NO_DELETE,
        pending: &[1],
        vanished_raw: &[0, 0, 0, 1],
    });
    round_trip(Msg::Result {
        xfer: 1,
        status: RESULT_FAILED,
        files: 3,
        bytes: 4,
        deleted: 5,
        message: b"disk full",
    });
    round_trip(Msg::Abort {
        xfer: 1,
        reason: b"bye",
    });
    for status in [OUTCOME_ASK, OUTCOME_COMMITTED, OUTCOME_ABORTED] {
        round_trip(Msg::Outcome {
            origin: 7,
            xfer: 9,
            status,
        });
    }
}

#[test]
fn outcome_with_an_unknown_status_is_refused() {
    let mut buf = [0u8; 64];
    let m = Msg::Outcome {
        origin: 7,
        xfer: 9,
        status: OUTCOME_ABORTED,
    };
    let n = m.encode(&hdr(), &mut buf);
    buf[n - 1] = 3;
    assert_eq!(
        decode(&buf[..n]),
        Err(WireError::BadValue("outcome status"))
    );
}

#[test]
fn header_checks() {
    let mut buf = [0u8; 64];
    let n = Msg::Leave.encode(&hdr(), &mut buf);
    assert!(decode(&buf[..n]).is_ok());
    buf[0] = b'X';
    assert_eq!(decode(&buf[..n]), Err(WireError::BadMagic));
    buf[0] = b'M';
    buf[2] = 77;
    assert_eq!(decode(&buf[..n]), Err(WireError::BadVersion(77)));
    buf[2] = VERSION;
    buf[3] = 200;
    assert_eq!(decode(&buf[..n]), Err(WireError::UnknownKind(200)));
}

#[test]
fn nak_maps_are_bounded() {
    let mut w = Writer::new();
    w.u8(2);
    w.varint(1);
    w.varint(1);
    w.u8(MAX_MAP as u8 + 1);
    w.raw(&[0xff; MAX_MAP + 1]);
    let raw = w.into_vec();
    let m = Msg::Nak {
        xfer: 1,
        round: 0,
        flags: 0,
        seen: 0,
        hold_us: 0,
        entries: &raw,
    };
    let mut buf = [0u8; MAX_DATAGRAM];
    let n = m.encode(&hdr(), &mut buf);
    assert_eq!(decode(&buf[..n]), Err(WireError::TooLarge("missing map")));
}

#[test]
fn block_size_fits_ethernet() {
    let b = block_size(1500, false);
    assert_eq!(b % 2, 0);
    assert!(HEADER_LEN + PARITY_HDR + b <= 1472);
    assert!(HEADER_LEN + BLOCK_HDR + b <= 1472);
    let s = block_size(1500, true);
    assert!(HEADER_LEN + PARITY_HDR + s + SEAL_OVERHEAD <= 1472);
}

#[test]
fn varints() {
    for v in [0u64, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
        let mut w = Writer::new();
        w.varint(v);
        let b = w.into_vec();
        assert_eq!(b.len(), varint_len(v));
        assert_eq!(Reader::new(&b).varint().unwrap(), v);
    }
    assert!(Reader::new(&[0xff; 11]).varint().is_err());
}

#[test]
fn announce_parts_must_fit_their_total() {
    let part = |total: u16, first: u16, n: usize| {
        let ids = vec![7u8; n * 8];
        let mut buf = [0u8; MAX_DATAGRAM];
        let m = Msg::Announce(Announce {
            xfer: 1,
            block: 1436,
            group: 128,
            parity: 64,
            manifest_len: 100,
            total,
            first,
            targets_raw: &ids,
            pending: &[0xff],
        });
        let len = m.encode(&hdr(), &mut buf);
        decode(&buf[..len]).map(|_| ())
    };
    assert!(part(1000, 990, 10).is_ok());
    assert!(part(1000, 991, 10).is_err(), "past the end of the list");
    assert!(part(10, 0, 0).is_err(), "an empty part");
    assert!(part(MAX_TARGETS as u16 + 1, 0, 1).is_err(), "over the cap");
    let ids: Vec<u8> = (0u64..3).flat_map(|i| (100 + i).to_be_bytes()).collect();
    let a = Announce {
        xfer: 1,
        block: 1436,
        group: 128,
        parity: 64,
        manifest_len: 100,
        total: 700,
        first: 600,
        targets_raw: &ids,
        pending: &[0b100],
    };
    assert_eq!(a.position(102), Some(602));
    assert_eq!(a.position(99), None);
    assert!(a.is_pending(602) && !a.is_pending(601) && !a.is_pending(2));
}

#[test]
fn echo_hold_is_rewritten_in_place_for_naks_and_feedback_only() {
    let entries = [0u8; 0];
    let fb = sample_feedback();
    let msgs = [
        Msg::Feedback(fb),
        Msg::Nak {
            xfer: 1,
            round: 3,
            flags: NAK_FINAL,
            seen: 1 << 40,
            hold_us: 77,
            entries: &entries,
        },
    ];
    for m in msgs {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let n = m.encode(&hdr(), &mut buf);
        assert!(set_echo_hold(&mut buf[..n], 0x0102_0304));
        let (_, back) = decode(&buf[..n]).expect("still decodes");
        match (back, m) {
            (Msg::Feedback(b), Msg::Feedback(f)) => {
                assert_eq!(b.hold_us, 0x0102_0304);
                assert_eq!(
                    Feedback {
                        hold_us: f.hold_us,
                        ..b
                    },
                    f,
                    "nothing else moved"
                );
            }
            (
                Msg::Nak {
                    xfer,
                    round,
                    flags,
                    seen,
                    hold_us,
                    entries: e,
                },
                Msg::Nak {
                    xfer: x2,
                    round: r2,
                    flags: f2,
                    seen: s2,
                    ..
                },
            ) => {
                assert_eq!(hold_us, 0x0102_0304);
                assert_eq!((xfer, round, flags, seen, e.len()), (x2, r2, f2, s2, 0));
            }
            other => panic!("{other:?}"),
        }
        // Too short to hold it: left alone.
        assert!(!set_echo_hold(&mut buf[..30], 1));
    }
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let n = Msg::Pace(sample_pace()).encode(&hdr(), &mut buf);
    let before = buf[..n].to_vec();
    assert!(!set_echo_hold(&mut buf[..n], 1));
    assert_eq!(buf[..n], before[..]);
}

#[test]
fn aggregate_round_trips_and_refuses_foreign_kinds_and_bad_items() {
    let mut items = Vec::new();
    push_aggregate_item(&mut items, 11, kind::RESULT, &[0, 0, 0, 5, 0, 0, 0, 0, 1]);
    push_aggregate_item(
        &mut items,
        12,
        kind::REPORT,
        b"\x00\x00\x00\x05\x00\x00\x00\x01",
    );
    round_trip(Msg::Aggregate {
        origin: 0x55,
        xfer: 5,
        items: &items,
    });
    let got: Vec<_> = aggregate_items(&items)
        .map(|(n, k, b)| (n, k, b.len()))
        .collect();
    assert_eq!(got, vec![(11, kind::RESULT, 9), (12, kind::REPORT, 8)]);
    let mut buf = [0u8; MAX_DATAGRAM];
    // An item of a kind that is not an answer (a BLOCK) is refused.
    let mut bad = Vec::new();
    push_aggregate_item(&mut bad, 11, kind::BLOCK, &[1, 2, 3]);
    let n = Msg::Aggregate {
        origin: 1,
        xfer: 2,
        items: &bad,
    }
    .encode(&hdr(), &mut buf);
    assert!(decode(&buf[..n]).is_err());
    // An item whose length runs past the end is refused.
    let mut short = items.clone();
    short.truncate(items.len() - 1);
    let n = Msg::Aggregate {
        origin: 1,
        xfer: 2,
        items: &short,
    }
    .encode(&hdr(), &mut buf);
    assert!(decode(&buf[..n]).is_err());
}
