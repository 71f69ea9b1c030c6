//! Integration tests of deploy safety (issue 17): receiver-side protection (`--protect`,
//! `--max-delete` on the daemon), hooks around the commit, durable metadata and the
//! cluster-wide all-or-none commit (`--atomic`). Real `makuo` binaries on loopback, through
//! the shared fixtures in `tests/common/mod.rs`; every wait is bounded.

mod common;

use std::fs;

use common::*;

/// Must show: "`--protect 'config/**'` on a member: a push with `--delete` neither overwrites
/// nor deletes under `config/` there." The other member (no protection) gets the push whole;
/// `check` names the protected paths as protected, not as differences, and the push's result
/// names them too.
#[test]
fn protect_keeps_config_on_one_member_against_delete() {
    let mut c = Cluster::new();
    small_site(&c.src);
    write(&c.src, "config/app.conf", "from the sender\n");
    write(&c.src, "config/new.conf", "new from the sender\n");
    c.add("m1", &["--no-fsync", "--protect", "config/**"]);
    c.add("m2", &["--no-fsync"]);
    let m1 = c.base("m1").to_path_buf();
    write(&m1, "config/app.conf", "local to m1\n");
    write(&m1, "config/only-here.conf", "m1's own\n");
    write(&m1, "config/sub/deep.conf", "m1's deep\n");
    write(&m1, "stray.txt", "not in the source: deleted\n");
    let before = fingerprint(&m1.join("config"));

    let check = c.check("-r . --json");
    let j = check.json();
    let row = |name: &str| {
        j["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .unwrap_or_else(|| panic!("no row for {name}: {check}"))
            .clone()
    };
    let m1row = row("m1");
    let p1: Vec<&str> = m1row["protected"]
        .as_array()
        .unwrap_or_else(|| panic!("m1 lists nothing protected: {check}"))
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        p1.contains(&"config/app.conf") && p1.contains(&"config/new.conf"),
        "{check}"
    );
    let diffs1 = row("m1")["changes"].clone();
    assert!(
        !diffs1.to_string().contains("config/"),
        "protected paths listed as different on m1: {check}"
    );
    assert!(row("m2")["protected"].is_null(), "{check}");

    let r = c.sync("-r . --delete");
    assert_eq!(r.code, 0, "{r}");
    assert!(
        r.result_of("m1").contains("protected: config/app.conf"),
        "the result names what was protected: {r}"
    );
    // Nothing under config/ changed on m1: not overwritten, not created, not deleted.
    assert_same(&before, &fingerprint(&m1.join("config")), "m1 config/");
    assert!(
        !m1.join("stray.txt").exists(),
        "--delete still works outside config/"
    );
    assert_eq!(
        fs::read(m1.join("index.php")).unwrap(),
        fs::read(c.src.join("index.php")).unwrap()
    );
    // m2 has no protection: identical to the source.
    assert_identical(&c.src, c.base("m2"), "m2");

    // The JSON of the push says it too.
    let j = c.sync("-r . --delete --json").json();
    let m1row = j["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "m1")
        .unwrap()
        .clone();
    assert!(
        m1row["protected"].to_string().contains("config/app.conf"),
        "{j}"
    );
    assert_same(
        &before,
        &fingerprint(&m1.join("config")),
        "m1 config/ after the 2nd push",
    );
}

/// Daemon `--max-delete N`: a push that would delete more there is refused on that member
/// alone (nothing changes there, the others apply it) and the push exits 25.
#[test]
fn daemon_max_delete_refuses_the_push_there_with_exit_25() {
    let mut c = Cluster::new();
    small_site(&c.src);
    c.add("m1", &["--no-fsync", "--max-delete", "2"]);
    c.add("m2", &["--no-fsync"]);
    c.initial_sync();
    for i in 0..3 {
        fs::remove_file(c.src.join(format!("many/f{i:02}.txt"))).unwrap();
    }
    write(&c.src, "index.php", "<?php echo 'v2';\n");
    let before = fingerprint(c.base("m1"));
    let r = c.sync("-r . --delete");
    assert_eq!(r.code, 25, "{r}");
    assert!(
        r.result_of("m1")
            .contains("refused by this member's --max-delete (2)"),
        "{r}"
    );
    assert_same(&before, &fingerprint(c.base("m1")), "m1 (refused)");
    assert_identical(&c.src, c.base("m2"), "m2");
    // Within the limit the push applies there too.
    for i in 0..2 {
        write(&c.src, &format!("many/f{i:02}.txt"), "back\n");
    }
    let r = c.sync("-r . --delete");
    assert_eq!(r.code, 0, "{r}");
    assert_identical(&c.src, c.base("m1"), "m1");
}
