use super::*;
use crate::record::View;
use crate::testing::{Rng, totp_record};

fn framed<T: Serialize>(message: &T) -> Vec<u8> {
    let mut out = Vec::new();
    write_frame(&mut out, message).unwrap();
    out
}

fn every_request() -> Vec<Request> {
    vec![
        Request::View {
            user: "alice".into(),
        },
        Request::Check {
            user: "alice".into(),
            candidates: vec![Zeroizing::new("123456".into()), Zeroizing::new("".into())],
            keep_backup: true,
            source: Some("203.0.113.7".into()),
            service: Some("sshd".into()),
            now: Some(1_767_225_600),
        },
        Request::SendCode {
            user: "alice".into(),
            channel: Kind::Email,
            to: "alice@example.org".into(),
            service: "sshd".into(),
            now: None,
        },
        Request::TrustHost {
            user: "alice".into(),
            trust: Trust {
                host: "203.0.113.7".into(),
                service: "sshd".into(),
                key: Some("SHA256:fn6bZGdoEtZAKAg/cDTyyvyNexwQ1eS/gkylkw2RkYU".into()),
                days: 7,
            },
            now: None,
        },
        Request::Change {
            user: "alice".into(),
            change: Change::Enroll {
                record: Box::new(totp_record()),
                replacing: true,
            },
            proof: Some(Zeroizing::new("tok".into())),
            password: Some(Zeroizing::new("pw".into())),
            now: None,
        },
        Request::Change {
            user: "alice".into(),
            change: Change::ForgetHost { host: "::1".into() },
            proof: None,
            password: None,
            now: Some(5),
        },
        Request::Change {
            user: "alice".into(),
            change: Change::AddDevice {
                device: Box::new(totp_record().devices.remove(0)),
            },
            proof: Some(Zeroizing::new("tok".into())),
            password: None,
            now: None,
        },
        Request::Change {
            user: "alice".into(),
            change: Change::RenameDevice {
                from: DeviceName::parse("app").unwrap(),
                to: DeviceName::parse("phone.2").unwrap(),
            },
            proof: None,
            password: None,
            now: None,
        },
        Request::EnrollIssued {
            user: "alice".into(),
            replacing: true,
            device: Some(DeviceName::parse("spare").unwrap()),
            confirm: Some(Zeroizing::new("123456".into())),
            proof: Some(Zeroizing::new("tok".into())),
            password: None,
            now: None,
        },
    ]
}

fn every_reply() -> Vec<Reply> {
    vec![
        Reply::View { view: None },
        Reply::View {
            view: Some(Box::new(View::of(&totp_record()))),
        },
        Reply::Checked {
            checked: Checked::Accepted {
                method: Method::Totp,
                device: Some(crate::record::DeviceName::parse("phone").unwrap()),
                backups_left: 9,
                candidate: 0,
            }
            .into(),
            proof: Some(Zeroizing::new("tok".into())),
        },
        Reply::Changed {
            changed: Changed::BackupCodes {
                codes: vec![Zeroizing::new("12345678".into())],
            },
        },
        Reply::Checked {
            proof: None,
            checked: Checked::Refused {
                why: Refusal::Replayed,
                tried: Some(Method::Totp),
                locked_until: Some(5),
            }
            .into(),
        },
        Reply::Checked {
            checked: Checked::Locked(77).into(),
            proof: None,
        },
        Reply::Checked {
            checked: Checked::NotEnrolled.into(),
            proof: None,
        },
        Reply::Sent {
            outcome: SendOutcome::Limited { next: 9, max: 3 }.into(),
        },
        Reply::Sent {
            outcome: SendOutcome::Failed("exit 1".into()).into(),
        },
        Reply::Trusted {
            host: Some("::1".into()),
        },
        Reply::Error {
            kind: Failure::Forbidden,
            message: "no".into(),
        },
    ]
}

#[test]
fn every_message_reads_back_as_written() {
    for request in every_request() {
        let back: Request = read_frame(&mut framed(&request).as_slice()).unwrap();
        assert_eq!(back, request);
    }
    for reply in every_reply() {
        let back: Reply = read_frame(&mut framed(&reply).as_slice()).unwrap();
        assert_eq!(back, reply);
    }
}

#[test]
fn the_header_is_checked_before_the_payload_is_read() {
    let mut frame = framed(&every_request()[0]);
    frame[0] = b'X';
    assert!(matches!(
        read_payload(&mut frame.as_slice()),
        Err(FrameError::Magic)
    ));
    let mut frame = framed(&every_request()[0]);
    frame[4] = 2;
    let err = read_payload(&mut frame.as_slice()).unwrap_err();
    assert!(matches!(err, FrameError::Version(2)));
    assert!(
        err.to_string().contains("version 2 is not supported"),
        "{err}"
    );
    // A header announcing 4 GiB, followed by nothing: refused from the
    // header alone, nothing allocated.
    let mut huge = MAGIC.to_vec();
    huge.push(VERSION);
    huge.extend_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        read_payload(&mut huge.as_slice()),
        Err(FrameError::TooLarge(n)) if n == u64::from(u32::MAX)
    ));
}

#[test]
fn truncated_frames_and_empty_streams_are_told_apart() {
    assert!(matches!(
        read_payload(&mut &b""[..]),
        Err(FrameError::Closed)
    ));
    let frame = framed(&every_request()[1]);
    for cut in 1..frame.len() {
        let err = read_payload(&mut &frame[..cut]).unwrap_err();
        assert!(
            matches!(err, FrameError::Malformed(_)),
            "cut at {cut}: {err}"
        );
    }
}

#[test]
fn a_payload_over_the_cap_is_never_written() {
    let big = Request::View {
        user: "a".repeat(MAX_PAYLOAD),
    };
    let mut out = Vec::new();
    assert!(matches!(
        write_frame(&mut out, &big),
        Err(FrameError::TooLarge(_))
    ));
    assert!(out.is_empty());
}

#[test]
fn unknown_operations_and_fields_are_malformed() {
    for text in [
        "op = \"unlock-everyone\"\nuser = \"alice\"\n",
        "op = \"view\"\nuser = \"alice\"\nas_root = true\n",
        "op = \"view\"\n",
        "user = \"alice\"\n",
        "\u{0}\u{1}",
    ] {
        let mut frame = Vec::new();
        write_payload(&mut frame, text.as_bytes()).unwrap();
        let err = read_frame::<Request>(&mut frame.as_slice()).unwrap_err();
        assert!(matches!(err, FrameError::Malformed(_)), "{text:?}: {err}");
    }
}

/// A check from a client that predates `[[policy.override]]` names no
/// service: it still reads, with none (the daemon then resolves the
/// entries as for an unknown service, each setting at its strictest).
#[test]
fn a_check_without_a_service_reads_with_none() {
    let text = "op = \"check\"\nuser = \"alice\"\ncandidates = [\"123456\"]\n";
    let mut frame = Vec::new();
    write_payload(&mut frame, text.as_bytes()).unwrap();
    let request = read_frame::<Request>(&mut frame.as_slice()).unwrap();
    assert!(
        matches!(&request, Request::Check { service: None, .. }),
        "{request:?}"
    );
    // And one without a service is written without the key, so an older
    // daemon reads it too.
    let written = toml::to_string(&request).unwrap();
    assert!(!written.contains("service"), "{written}");
}

/// Random bytes, and random changes to good frames, never panic the
/// reader of either side and never read as a message they are not.
#[test]
fn fuzzed_frames_are_errors_or_messages_never_panics() {
    let mut rng = Rng::new(1);
    let good: Vec<Vec<u8>> = every_request()
        .iter()
        .map(framed)
        .chain(every_reply().iter().map(framed))
        .collect();
    for round in 0..20_000 {
        let mut bytes = if round % 4 == 0 {
            rng.noise(63)
        } else {
            good[rng.below(good.len())].clone()
        };
        rng.mutate(&mut bytes, 4);
        let _ = read_frame::<Request>(&mut bytes.as_slice());
        let _ = read_frame::<Reply>(&mut bytes.as_slice());
    }
}
