//! makuosan's owner-match mode (`makuo daemon -O`): a push sent by this daemon leaves out
//! every entry not owned by the daemon's user ("skipping PATH: owner unmatch"), and, when the
//! push deletes, protects those paths on the members with anchored rules so that leaving a
//! file out never deletes it there. Directories are kept (they hold the files that match).
//! Pure: works on a manifest, touches nothing.

use crate::proto::manifest::{EntryKind, Manifest};

/// Why an entry was left out.
pub const SKIP_REASON: &str = "owner unmatch";

/// Leaves out of `manifest` what `uid` does not own; returns the paths left out. With
/// deletion on, each is protected by an anchored exclude rule; a name that cannot be written
/// as a rule (not UTF-8) turns deletion off for the whole push instead, and the second value
/// says so.
pub fn apply(manifest: &mut Manifest, uid: u32) -> (Vec<Vec<u8>>, bool) {
    let mut skipped = Vec::new();
    manifest.entries.retain(|e| {
        let keep = e.kind == EntryKind::Dir || e.uid == uid;
        if !keep {
            skipped.push(e.path.clone());
        }
        keep
    });
    let mut delete_off = false;
    if manifest.options.delete || manifest.options.delete_only {
        for p in &skipped {
            match std::str::from_utf8(p) {
                Ok(s) => manifest.exclude_first(format!("/{}", literal(s))),
                Err(_) => delete_off = true,
            }
        }
        if delete_off {
            manifest.options.delete = false;
            manifest.options.delete_only = false;
        }
    }
    (skipped, delete_off)
}

/// `s` as an rsync pattern matching exactly `s`: a pattern without wildcards is compared as a
/// string; one with wildcards takes backslash escapes.
fn literal(s: &str) -> String {
    if !s.contains(['*', '?', '[']) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 4);
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::Filter;
    use crate::proto::manifest::{Entry, PushOptions};

    fn entry(path: &str, uid: u32, dir: bool) -> Entry {
        let mut e = if dir {
            Entry::dir(path.as_bytes(), 0o755, 0)
        } else {
            Entry::file(path.as_bytes(), 1, 0o644, 0)
        };
        e.uid = uid;
        e
    }

    #[test]
    fn leaves_out_what_others_own_and_protects_it_from_deletion() {
        let mut m = Manifest {
            options: PushOptions {
                delete: true,
                ..Default::default()
            },
            roots: vec![b".".to_vec()],
            rules: vec![],
            entries: vec![
                entry("d", 7, true),
                entry("d/mine", 1000, false),
                entry("d/theirs", 7, false),
                entry("d/odd*[name]?", 7, false),
            ],
            filter: None,
            started_ms: None,
        };
        let (skipped, off) = apply(&mut m, 1000);
        assert!(!off);
        assert_eq!(skipped, [b"d/theirs".to_vec(), b"d/odd*[name]?".to_vec()]);
        let kept: Vec<&[u8]> = m.entries.iter().map(|e| e.path.as_slice()).collect();
        assert_eq!(kept, [&b"d"[..], b"d/mine"]);
        let f = Filter::new(&m.rules).unwrap();
        assert!(f.excluded(b"d/theirs", false));
        assert!(f.excluded(b"d/odd*[name]?", false));
        assert!(
            !f.excluded(b"d/oddX[name]?", false),
            "escaped, not a wildcard"
        );
        assert!(!f.excluded(b"d/mine", false));
        // A name that is not UTF-8 cannot be protected: deletion is off for the push.
        let mut m = Manifest {
            options: PushOptions {
                delete: true,
                ..Default::default()
            },
            roots: vec![b".".to_vec()],
            rules: vec![],
            entries: vec![Entry::file(b"x\xff", 1, 0o644, 0)],
            filter: None,
            started_ms: None,
        };
        m.entries[0].uid = 5;
        assert!(apply(&mut m, 1000).1 && !m.options.delete);
    }

    #[test]
    fn protects_left_out_paths_when_the_rules_travel_in_the_filter_section() {
        use crate::proto::manifest::{FilterTable, WireRule};
        // `R *`: a receiver-side rule, so the rules travel in the filter section.
        let t = FilterTable {
            rules: vec![WireRule {
                flags: WireRule::INCLUDE | WireRule::RECEIVER,
                pattern: "*".into(),
            }],
            dirs: vec![],
        };
        let mut m = Manifest {
            options: PushOptions {
                delete: true,
                ..Default::default()
            },
            roots: vec![b".".to_vec()],
            rules: vec![],
            entries: vec![entry("theirs", 7, false)],
            filter: Some(t),
            started_ms: None,
        };
        apply(&mut m, 1000);
        let r = Filter::for_manifest(&m).unwrap();
        assert!(
            r.protected(b"theirs", false),
            "left out, so protected first"
        );
        assert!(!r.protected(b"other", false), "R * still risks the rest");
    }
}
