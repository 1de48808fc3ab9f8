//! A reader that reads the mirror as apt would while a large update is pushed, and counts
//! what it must never see: an incomplete Release, an index that Release lists but that is
//! missing or does not decompress, a `Filename:` that is missing from the pool or has another
//! size. Listed sizes that disagree with the index (reprepro writes no by-hash directories,
//! so between the index renames and the Release rename they may) are counted apart.

use std::collections::HashSet;
use std::fs;
use std::io::Read;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::repo::Repo;

const DISTS: [&str; 3] = ["bookworm", "trixie", "sid"];

#[derive(Debug, Default)]
struct Figures {
    samples: u64,
    violations: u64,
    examples: Vec<String>,
    /// An index whose size differs from what the visible Release lists.
    window_mismatches: u64,
    /// Samples that saw at least one such mismatch.
    window_samples: u64,
}

impl Figures {
    fn violation(&mut self, what: String) {
        self.violations += 1;
        if self.examples.len() < 10 {
            self.examples.push(what);
        }
    }
}

/// The (path, size) entries of a Release file's SHA256 section, or None if it is incomplete.
fn release_entries(text: &str) -> Option<Vec<(String, u64)>> {
    if !text.ends_with('\n') {
        return None;
    }
    let section = text.split("\nSHA256:\n").nth(1)?;
    let mut entries = Vec::new();
    for line in section.lines() {
        let Some(line) = line.strip_prefix(' ') else {
            break;
        };
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() != 3 || f[0].len() != 64 {
            return None;
        }
        entries.push((f[2].to_owned(), f[1].parse().ok()?));
    }
    (!entries.is_empty()).then_some(entries)
}

fn check_packages(remote: &Path, index: &str, text: &str, fig: &mut Figures) {
    for stanza in text.split("\n\n").filter(|s| !s.trim().is_empty()) {
        let field = |name: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(name).map(str::trim))
                .map(str::to_owned)
        };
        let (Some(file), Some(size)) = (field("Filename:"), field("Size:")) else {
            fig.violation(format!("{index}: a stanza without Filename or Size"));
            continue;
        };
        match fs::metadata(remote.join(&file)) {
            Err(_) => fig.violation(format!("{index} names {file}, missing from the pool")),
            Ok(m) if m.len().to_string() != size => fig.violation(format!(
                "{index} names {file} of {size} bytes, the pool has {}",
                m.len()
            )),
            Ok(_) => {}
        }
    }
}

/// One look at the whole mirror.
fn sample(
    remote: &Path,
    local: &Path,
    seen_release: &mut HashSet<&'static str>,
    fig: &mut Figures,
) {
    fig.samples += 1;
    let mut mismatched = false;
    for dist in DISTS {
        let dir = remote.join("dists").join(dist);
        let text = match fs::read_to_string(dir.join("Release")) {
            Ok(t) => t,
            Err(_) => {
                // Not published yet is fine; gone once published is not.
                if seen_release.contains(dist) {
                    fig.violation(format!("{dist}/Release is missing"));
                }
                continue;
            }
        };
        seen_release.insert(dist);
        let Some(entries) = release_entries(&text) else {
            fig.violation(format!("{dist}/Release is incomplete"));
            continue;
        };
        for (name, size) in entries {
            if !local.join("dists").join(dist).join(&name).exists() {
                continue; // listed by reprepro but not stored (its uncompressed variants)
            }
            let path = dir.join(&name);
            let bytes = match fs::read(&path) {
                Ok(b) => b,
                Err(_) => {
                    fig.violation(format!("{dist}/{name} is listed but missing"));
                    continue;
                }
            };
            if bytes.len() as u64 != size {
                fig.window_mismatches += 1;
                mismatched = true;
            }
            let text = if name.ends_with(".gz") {
                let mut out = String::new();
                if flate2::read::GzDecoder::new(&bytes[..])
                    .read_to_string(&mut out)
                    .is_err()
                {
                    fig.violation(format!("{dist}/{name} does not decompress"));
                    continue;
                }
                out
            } else {
                match String::from_utf8(bytes) {
                    Ok(t) => t,
                    Err(_) => {
                        fig.violation(format!("{dist}/{name} is not text"));
                        continue;
                    }
                }
            };
            if name.ends_with("/Packages") || name.ends_with("/Packages.gz") {
                check_packages(remote, &format!("{dist}/{name}"), &text, fig);
            }
        }
    }
    if mismatched {
        fig.window_samples += 1;
    }
}

/// A mirror with three distributions, and pending logs that replace every package by a new
/// version (so the old pool files are deleted) and fill a new distribution.
fn large_update() -> Repo {
    let repo = Repo::new();
    fs::write(
        repo.base().join("conf/distributions"),
        "Codename: bookworm\nComponents: main\nArchitectures: amd64\n\n\
         Codename: trixie\nComponents: main contrib\nArchitectures: amd64 i386\n\n\
         Codename: sid\nComponents: main\nArchitectures: amd64\n",
    )
    .unwrap();
    let old: Vec<String> = (0..60)
        .map(|i| {
            repo.deb(&format!("p{i}"), "1.0", 2_000 + i * 700)
                .display()
                .to_string()
        })
        .collect();
    let mut args = vec!["includedeb", "bookworm"];
    args.extend(old.iter().map(String::as_str));
    repo.reprepro(&args).expect(0);
    repo.reprepro(&["copysrc", "trixie", "bookworm", "p0"])
        .expect(0);
    let names: Vec<String> = (0..60).map(|i| format!("p{i}")).collect();
    let mut copy = vec!["copy", "trixie", "bookworm"];
    copy.extend(names.iter().map(String::as_str));
    repo.reprepro(&copy).expect(0);
    repo.assert_mirrored(&[]);

    repo.set_conf("servername nowhere.invalid\n");
    let new: Vec<String> = (0..60)
        .map(|i| {
            repo.deb(&format!("p{i}"), "2.0", 3_000 + i * 900)
                .display()
                .to_string()
        })
        .collect();
    for dist in ["bookworm", "trixie"] {
        let mut args = vec!["includedeb", dist];
        args.extend(new.iter().map(String::as_str));
        assert_ne!(repo.reprepro(&args).code(), 0);
    }
    let fresh: Vec<String> = (0..40)
        .map(|i| {
            repo.deb(&format!("q{i}"), "1.0", 50_000)
                .display()
                .to_string()
        })
        .collect();
    let mut args = vec!["includedeb", "sid"];
    args.extend(fresh.iter().map(String::as_str));
    assert_ne!(repo.reprepro(&args).code(), 0);
    repo
}

/// Pushes the pending update through a slow link while a reader samples the mirror.
fn push_while_reading(repo: &Repo, extra_conf: &str) -> Figures {
    repo.use_faulty_server(-1, "delay-2");
    let conf = fs::read_to_string(repo.base().join("conf/outsftphook.conf")).unwrap();
    repo.set_conf(&format!("{conf}{extra_conf}"));
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let done = done.clone();
        let (remote, local) = (repo.remote(), repo.base());
        std::thread::spawn(move || {
            let mut fig = Figures::default();
            let mut seen = HashSet::new();
            while !done.load(Ordering::Relaxed) {
                sample(&remote, &local, &mut seen, &mut fig);
            }
            sample(&remote, &local, &mut seen, &mut fig);
            fig
        })
    };
    let ran = repo.hook(&["--basedir", ".", "--pending"]);
    done.store(true, Ordering::Relaxed);
    let fig = reader.join().unwrap();
    ran.expect(0);
    repo.assert_mirrored(&[]);
    fig
}

#[test]
fn a_reader_never_sees_a_broken_mirror_during_an_atomic_push() {
    let repo = large_update();
    let fig = push_while_reading(&repo, "");
    eprintln!("atomic (posix-rename): {fig:?}");
    assert!(
        fig.samples >= 20,
        "too few samples to mean anything: {fig:?}"
    );
    assert_eq!(fig.violations, 0, "{:#?}", fig.examples);
}

#[test]
fn the_remove_then_rename_fallback_shows_its_window() {
    let repo = large_update();
    let fig = push_while_reading(&repo, "posixrename no\n");
    // Reported, not asserted: without an atomic rename each replaced file is missing for a
    // round trip, and a reader that looks then sees it. What must hold all the same: no
    // Packages ever names a pool file that is missing or of another size.
    eprintln!("fallback (remove, then rename): {fig:?}");
    assert!(
        !fig.examples
            .iter()
            .any(|e| e.contains("from the pool") || e.contains("the pool has")),
        "{:#?}",
        fig.examples
    );
}
