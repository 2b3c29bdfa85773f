//! The service on a retrying memory store: every change runs twice, as a
//! database may run it, and the outcomes must still be exact.

use std::cell::RefCell;
use std::path::Path;

use super::*;
use crate::store::MemoryStore;
use crate::testing::{code_at, totp_record};

const NOW: u64 = 1_700_000_010;

fn config(text: &str) -> SystemConfig {
    SystemConfig::from_toml(Path::new("test.toml"), text).unwrap()
}

const EMAIL: &str = "[channels.email]\ncommand = [\"/bin/true\"]\nrun_as = \"nobody\"\nfrom = \"otp@example.org\"\nmax_sends_per_hour = 2\n";

fn with_email() -> UserRecord {
    let mut r = totp_record();
    r.set_destination(Kind::Email, Some("alice@example.org".into()));
    r
}

/// Keeps what it was asked to send.
#[derive(Default)]
struct Outbox(RefCell<Vec<String>>);

impl Sender for Outbox {
    fn send(&self, message: &Message) -> Outcome {
        let text = String::from_utf8_lossy(&message.stdin).to_string();
        self.0.borrow_mut().push(text);
        Outcome::Sent(Duration::from_millis(1))
    }
}

impl Outbox {
    fn last_code(&self) -> Vec<u8> {
        let last = self.0.borrow().last().cloned().unwrap_or_default();
        last.split(|c: char| !c.is_ascii_digit())
            .find(|w| (6..=8).contains(&w.len()))
            .unwrap_or_default()
            .as_bytes()
            .to_vec()
    }
}

const WHO: Recipient<'static> = Recipient {
    user: "alice",
    service: "test",
};

#[test]
fn a_right_code_is_accepted_once_even_when_the_transaction_runs_twice() {
    let c = config("");
    let store = MemoryStore::with("alice", totp_record()).retrying();
    let v = Verifier::new(&c, &store);
    let code = code_at(NOW);
    let first = v.check(&[&code], NOW, BackupUse::Consume).unwrap();
    assert!(matches!(
        first,
        Checked::Accepted {
            method: Method::Totp,
            candidate: 0,
            ..
        }
    ));
    let again = v.check(&[&code], NOW, BackupUse::Consume).unwrap();
    assert_eq!(
        again,
        Checked::Refused {
            why: Refusal::Replayed,
            tried: Some(Method::Totp),
            locked_until: None
        }
    );
    assert_eq!(
        store.snapshot().unwrap().state.failures,
        1,
        "a replay counts"
    );
}

#[test]
fn wrong_answers_count_once_each_and_lock_at_the_limit() {
    let c = config("lockout_after = 3\n");
    let store = MemoryStore::with("alice", totp_record()).retrying();
    let v = Verifier::new(&c, &store);
    for _ in 0..2 {
        let refused = v.check(&[b"000000"], NOW, BackupUse::Consume).unwrap();
        assert!(matches!(
            refused,
            Checked::Refused {
                why: Refusal::Wrong,
                tried: None,
                locked_until: None
            }
        ));
    }
    let Checked::Refused {
        locked_until: Some(until),
        ..
    } = v.check(&[b"not a code"], NOW, BackupUse::Consume).unwrap()
    else {
        panic!("the third wrong answer locks");
    };
    assert_eq!(
        v.check(&[&code_at(NOW)], NOW, BackupUse::Consume).unwrap(),
        Checked::Locked(until),
        "a right code is not even looked at while locked"
    );
}

#[test]
fn per_source_answers_lock_their_source_and_never_the_account() {
    let c = config("lockout_after = 3\n");
    let store = MemoryStore::with("alice", totp_record()).retrying();
    let attacker = Verifier::new(&c, &store).per_source("198.51.100.4");
    for _ in 0..2 {
        let refused = attacker.check(&[b"000000"], NOW, BackupUse::Consume);
        assert!(matches!(
            refused.unwrap(),
            Checked::Refused {
                locked_until: None,
                ..
            }
        ));
    }
    let Checked::Refused {
        locked_until: Some(until),
        ..
    } = attacker
        .check(&[b"000000"], NOW, BackupUse::Consume)
        .unwrap()
    else {
        panic!("the third wrong answer locks the source");
    };
    assert_eq!(
        attacker
            .check(&[&code_at(NOW)], NOW, BackupUse::Consume)
            .unwrap(),
        Checked::Locked(until)
    );
    let record = store.snapshot().unwrap();
    assert_eq!((record.state.failures, record.locked_until(NOW)), (0, None));
    // The user, from elsewhere, gets in, and the code is used up there.
    let user = Verifier::new(&c, &store).per_source("203.0.113.9");
    assert!(matches!(
        user.check(&[&code_at(NOW)], NOW, BackupUse::Consume)
            .unwrap(),
        Checked::Accepted { .. }
    ));
    // A locked account holds for every source.
    store.put(Some({
        let mut r = store.snapshot().unwrap();
        r.state.locked_until = NOW + 60;
        r
    }));
    assert_eq!(
        user.check(&[&code_at(NOW + 30)], NOW, BackupUse::Consume)
            .unwrap(),
        Checked::Locked(NOW + 60)
    );
}

#[test]
fn a_backup_code_is_used_up_at_a_login_and_kept_by_a_plain_verify() {
    let c = config("");
    let mut record = totp_record();
    let codes = record.new_backup_codes(2, 8).unwrap();
    let store = MemoryStore::with("alice", record).retrying();
    let v = Verifier::new(&c, &store);
    let code = codes[0].as_bytes();
    let kept = v.check(&[code], NOW, BackupUse::Keep).unwrap();
    assert!(matches!(
        kept,
        Checked::Accepted {
            method: Method::Backup,
            backups_left: 2,
            ..
        }
    ));
    let used = v.check(&[code], NOW, BackupUse::Consume).unwrap();
    assert!(matches!(
        used,
        Checked::Accepted {
            backups_left: 1,
            ..
        }
    ));
    let again = v.check(&[code], NOW, BackupUse::Consume).unwrap();
    assert!(matches!(again, Checked::Refused { .. }));
}

#[test]
fn the_second_candidate_can_match_and_is_named() {
    let c = config("");
    let store = MemoryStore::with("alice", totp_record());
    let v = Verifier::new(&c, &store);
    let code = code_at(NOW);
    let got = v.check(&[b"12", &code], NOW, BackupUse::Consume).unwrap();
    assert!(matches!(got, Checked::Accepted { candidate: 1, .. }));
}

#[test]
fn no_record_is_not_enrolled_and_writes_nothing() {
    let c = config("");
    let store = MemoryStore::new("alice");
    let v = Verifier::new(&c, &store);
    assert_eq!(
        v.check(&[b"123456"], NOW, BackupUse::Consume).unwrap(),
        Checked::NotEnrolled
    );
    assert_eq!(store.writes(), 0);
}

#[test]
fn a_sent_code_logs_in_once_and_the_hourly_limit_holds() {
    let c = config(EMAIL);
    let store = MemoryStore::with("alice", with_email()).retrying();
    let v = Verifier::new(&c, &store);
    let menu = Menu::for_record(&c, &store.snapshot().unwrap());
    let offer = menu.choice(b"").unwrap().clone();
    assert_eq!(offer.to, "alice@example.org");
    let out = Outbox::default();
    let sent = v.send_code(&offer, NOW, WHO, &out).unwrap();
    assert!(
        matches!(sent, SendOutcome::Sent { minutes: 10, .. }),
        "{sent:?}"
    );
    assert_eq!(
        out.0.borrow().len(),
        1,
        "one message even though the change ran twice"
    );
    let code = out.last_code();
    let got = v.check(&[&code], NOW + 5, BackupUse::Consume).unwrap();
    assert!(
        matches!(
            got,
            Checked::Accepted {
                method: Method::Email,
                ..
            }
        ),
        "{got:?}"
    );
    assert!(matches!(
        v.check(&[&code], NOW + 6, BackupUse::Consume).unwrap(),
        Checked::Refused { .. }
    ));
    v.send_code(&offer, NOW + 7, WHO, &out).unwrap();
    let limited = v.send_code(&offer, NOW + 8, WHO, &out).unwrap();
    assert_eq!(
        limited,
        SendOutcome::Limited {
            next: NOW + 3600,
            max: 2
        }
    );
}

/// The log names the method an answer was a code of when that is known
/// (issue #13, item 3): the channel of an expired sent code.
#[test]
fn an_expired_sent_code_is_refused_as_expired_and_names_its_channel() {
    let c = config(EMAIL);
    let store = MemoryStore::with("alice", with_email()).retrying();
    let v = Verifier::new(&c, &store);
    let menu = Menu::for_record(&c, &store.snapshot().unwrap());
    let out = Outbox::default();
    v.send_code(&menu.offers[0], NOW, WHO, &out).unwrap();
    let code = out.last_code();
    assert_eq!(
        v.check(&[&code], NOW + 601, BackupUse::Consume).unwrap(),
        Checked::Refused {
            why: Refusal::Expired,
            tried: Some(Method::Email),
            locked_until: None
        }
    );
}

#[test]
fn a_destination_changed_since_the_prompt_gets_nothing() {
    let c = config(EMAIL);
    let store = MemoryStore::with("alice", with_email());
    let v = Verifier::new(&c, &store);
    let offer = Offer {
        kind: Kind::Email,
        to: "mallory@example.org".into(),
    };
    let out = Outbox::default();
    assert_eq!(
        v.send_code(&offer, NOW, WHO, &out).unwrap(),
        SendOutcome::Gone
    );
    assert!(out.0.borrow().is_empty());
}

#[test]
fn an_enrollment_code_comes_back_right_wrong_or_late() {
    let c = config(EMAIL);
    let store = MemoryStore::new("alice");
    let v = Verifier::new(&c, &store);
    let out = Outbox::default();
    let Confirmation::Pending(pending) = v
        .send_confirmation(Kind::Email, "alice@example.org", NOW, WHO, &out)
        .unwrap()
    else {
        panic!("sent");
    };
    let code = Answer::parse(&out.last_code()).unwrap();
    let wrong = Answer::parse(b"00000000").unwrap();
    assert_eq!(pending.check(Some(&code), NOW + 1), PendingCheck::Right);
    assert_eq!(pending.check(Some(&wrong), NOW + 1), PendingCheck::Wrong);
    assert_eq!(pending.check(None, NOW + 1), PendingCheck::Wrong);
    assert_eq!(pending.check(Some(&code), NOW + 601), PendingCheck::Expired);
    assert_eq!(store.writes(), 0, "nothing saved for an unenrolled user");
}

/// `otpgate enroll email` by a user with no record: each send is counted
/// (beside the record, which does not exist), so running the CLI in a loop
/// does not flood a mailbox; nothing becomes a record.
#[test]
fn confirmations_for_a_user_with_no_record_are_limited_per_hour() {
    let c = config(EMAIL);
    let store = MemoryStore::new("alice").retrying();
    let v = Verifier::new(&c, &store);
    let out = Outbox::default();
    for at in [NOW, NOW + 60] {
        let sent = v.send_confirmation(Kind::Email, "victim@example.org", at, WHO, &out);
        assert!(matches!(sent, Ok(Confirmation::Pending(_))));
    }
    let third = v.send_confirmation(Kind::Email, "victim@example.org", NOW + 120, WHO, &out);
    assert!(
        matches!(third, Ok(Confirmation::Limited { next, max: 2 }) if next == NOW + 3600),
        "the third send within the hour was not limited"
    );
    assert_eq!(out.0.borrow().len(), 2, "the third was not sent");
    assert!(matches!(
        v.send_confirmation(Kind::Email, "victim@example.org", NOW + 3600, WHO, &out),
        Ok(Confirmation::Pending(_))
    ));
    assert_eq!((store.snapshot(), store.writes()), (None, 0));
}

#[test]
fn the_menu_picks_by_enter_and_number_and_leaves_codes_alone() {
    let menu = Menu {
        offers: vec![
            Offer {
                kind: Kind::Email,
                to: "a".into(),
            },
            Offer {
                kind: Kind::Sms,
                to: "b".into(),
            },
        ],
    };
    assert_eq!(menu.choice(b"").unwrap().kind, Kind::Email);
    assert_eq!(menu.choice(b" 2 ").unwrap().kind, Kind::Sms);
    assert!(menu.choice(b"3").is_none());
    assert!(menu.choice(b"123456").is_none());
    assert!(
        Menu::default().choice(b"").is_none(),
        "no menu: an empty answer is a code"
    );
}

/// `policy.methods` (or an override's `methods`): a code of a method not
/// allowed is a wrong code, never tried, so never used up, and the record
/// keeps it exactly, in its place; a channel not allowed sends nothing.
#[test]
fn a_method_not_allowed_is_not_tried_and_keeps_its_codes() {
    let mut record = with_email();
    let backups = record.new_backup_codes(2, 8).unwrap();
    let sent = record.new_sent_code(Kind::Email, 6, NOW, 600).unwrap();
    let app_only = config(&format!("[policy]\nmethods = [\"app\"]\n{EMAIL}"));
    let store = MemoryStore::with("alice", record.clone()).retrying();
    let v = Verifier::new(&app_only, &store);
    for code in [backups[0].as_bytes(), sent.as_bytes()] {
        let checked = v.check(&[code], NOW, BackupUse::Consume).unwrap();
        assert!(
            matches!(
                checked,
                Checked::Refused {
                    why: Refusal::Wrong,
                    tried: None,
                    ..
                }
            ),
            "{checked:?}"
        );
    }
    let after = store.snapshot().unwrap();
    assert_eq!(after.backup, record.backup);
    assert_eq!(after.sent_codes, record.sent_codes);
    assert_eq!(after.state.failures, 2);
    let offer = Offer {
        kind: Kind::Email,
        to: "alice@example.org".into(),
    };
    let outbox = Outbox::default();
    assert_eq!(
        v.send_code(&offer, NOW, WHO, &outbox).unwrap(),
        SendOutcome::Gone
    );
    assert!(outbox.0.borrow().is_empty());
    assert!(Menu::for_record(&app_only, &after).is_empty());
    // The app still works.
    let code = code_at(NOW);
    assert!(matches!(
        v.check(&[&code], NOW, BackupUse::Consume).unwrap(),
        Checked::Accepted {
            method: Method::Totp,
            ..
        }
    ));
    // Without the app, backup codes and sent codes work, and the app's
    // code (of the next step) is wrong.
    let no_app = config(&format!(
        "[policy]\nmethods = [\"backup\", \"email\"]\n{EMAIL}"
    ));
    let v = Verifier::new(&no_app, &store);
    let next = code_at(NOW + 30);
    assert!(matches!(
        v.check(&[&next], NOW + 30, BackupUse::Consume).unwrap(),
        Checked::Refused { .. }
    ));
    assert!(
        store.snapshot().unwrap().totp().is_some(),
        "the app is kept"
    );
    assert!(matches!(
        v.check(&[sent.as_bytes()], NOW + 30, BackupUse::Consume)
            .unwrap(),
        Checked::Accepted {
            method: Method::Email,
            ..
        }
    ));
    assert!(matches!(
        v.check(&[backups[0].as_bytes()], NOW + 30, BackupUse::Consume)
            .unwrap(),
        Checked::Accepted {
            method: Method::Backup,
            ..
        }
    ));
}
