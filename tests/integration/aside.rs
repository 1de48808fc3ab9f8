//! An upload into a directory not there yet, on OpenSSH's server (which carries requests
//! out in the order sent): its temporary file is opened aside, in the directory above,
//! right behind the directory's MKDIR (no round trip waiting for it), and renamed into
//! the directory once it is made; where the MKDIR fails, the file aside is removed.

use std::fs;

use outsftphook::{Cause, Engine, EngineConfig, Op, Outcome, Req, Status};

use crate::support::{OPENSSH_SFTP_SERVER, Sandbox, names_in, pattern, rpath};

/// The hidden names (`.NAME.TAG.tmp`) that uploads of files named `name` opened aside in
/// `dir`, as the server logged them.
fn opened_aside(log: &[String], dir: &str, name: &str) -> Vec<String> {
    let prefix = format!("open \"{dir}/.{name}.");
    log.iter()
        .filter(|l| l.starts_with(&prefix) && l.contains(".tmp\" flags WRITE,CREATE,EXCL"))
        .map(|l| l.split('"').nth(1).unwrap().to_owned())
        .collect()
}

#[test]
fn into_a_new_directory_the_open_goes_aside_behind_the_mkdir_and_the_file_lands() {
    let sandbox = Sandbox::new();
    fs::create_dir_all(sandbox.remote().join("pool/main/z")).unwrap();
    let name = |k: usize| format!("znew{k}_1.0_amd64.deb");
    let rel = |k: usize| format!("pool/main/z/znew{k}/{}", name(k));
    let ops: Vec<Op> = (1..=3)
        .map(|k| Op::Upload {
            local: sandbox.local_file(&format!("f{k}"), 5000 * k, k as u8),
            remote: rpath(&rel(k)),
            fsync: false,
            mtime: None,
        })
        .collect();
    let mut engine = Engine::connect(&sandbox.openssh(), EngineConfig::default()).unwrap();
    let results = engine.run(&ops, |_, _| {}).unwrap();
    assert!(
        results.iter().all(|r| r == &Ok(Outcome::Done)),
        "{results:?}"
    );
    engine.close();
    let log = sandbox.log_lines();
    for k in 1..=3 {
        let at = |line: &str| log.iter().position(|l| l == line);
        let mkdir = format!("mkdir name \"pool/main/z/znew{k}\" mode 0755");
        let made = at(&mkdir).unwrap_or_else(|| panic!("{mkdir}: {log:#?}"));
        let aside = opened_aside(&log, "pool/main/z", &name(k));
        assert_eq!(aside.len(), 1, "{log:#?}");
        // Sent with the MKDIR, not once it was answered (which would have put the other
        // MKDIRs first): carried out right behind it, or before it (the engine sends the
        // turn's MKDIRs once it knows which new directories it needs).
        let open = format!("open \"{}\" flags WRITE,CREATE,EXCL mode 0644", aside[0]);
        let opened = at(&open).unwrap_or_else(|| panic!("{open}: {log:#?}"));
        assert!(opened < made || opened == made + 1, "{log:#?}");
        let rename = format!("rename old \"{}\" new \"{}\"", aside[0], rel(k));
        assert!(at(&rename).is_some(), "{log:#?}");
        let got = fs::read(sandbox.remote().join(rel(k))).unwrap();
        assert!(got == pattern(5000 * k, k as u8), "{} differs", rel(k));
        let dir = sandbox.remote().join(format!("pool/main/z/znew{k}"));
        assert_eq!(names_in(&dir), [name(k)]);
    }
    // Nothing was opened in the new directories: only renamed into them.
    assert!(
        !log.iter().any(|l| l.starts_with("open \"pool/main/z/znew")),
        "{log:#?}"
    );
    assert_eq!(
        names_in(&sandbox.remote().join("pool/main/z")),
        ["znew1", "znew2", "znew3"],
        "no temporary file left"
    );
}

#[test]
fn a_refused_mkdir_fails_the_upload_naming_the_directory_and_removes_what_was_aside() {
    let sandbox = Sandbox::new();
    fs::create_dir_all(sandbox.remote().join("pool/main/z")).unwrap();
    let server = sandbox.shell(&format!(
        "exec {OPENSSH_SFTP_SERVER} -P mkdir -e -l INFO -d '{}' 2>>'{}'",
        sandbox.remote().display(),
        sandbox.server_log().display()
    ));
    let rel = "pool/main/z/znew/znew_1.0_amd64.deb";
    let ops = [Op::Upload {
        local: sandbox.local_file("f", 5000, 1),
        remote: rpath(rel),
        fsync: false,
        mtime: None,
    }];
    let mut engine = Engine::connect(&server, EngineConfig::default()).unwrap();
    let results = engine.run(&ops, |_, _| {}).unwrap();
    engine.close();
    let Err(e) = &results[0] else {
        panic!("{results:?}")
    };
    let Cause::Directory { dir, cause } = &e.cause else {
        panic!("{e:?}")
    };
    assert_eq!(*dir, rpath("pool/main/z/znew"));
    assert!(
        matches!(
            **cause,
            Cause::Status {
                request: Req::Mkdir,
                code: Status::PermissionDenied,
                ..
            }
        ),
        "{cause:?}"
    );
    let log = sandbox.log_lines();
    let aside = opened_aside(&log, "pool/main/z", "znew_1.0_amd64.deb");
    assert_eq!(aside.len(), 1, "{log:#?}");
    assert!(
        log.iter()
            .any(|l| *l == format!("remove name \"{}\"", aside[0])),
        "{log:#?}"
    );
    assert!(names_in(&sandbox.remote().join("pool/main/z")).is_empty());
}
