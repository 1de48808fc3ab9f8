//! Planning on parsed logs: which log wins a path, what is journalled obsoleted, where each
//! job goes in the safe order, and what an interrupted run left to remove.

use super::*;
use std::path::Path;

use crate::repo::outlog::parse;

fn log(name: &str, text: &str) -> Outlog {
    parse(Path::new(name), text.as_bytes()).unwrap()
}

fn r(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

fn paths(jobs: &[Job]) -> Vec<String> {
    jobs.iter().map(|j| j.path.to_string()).collect()
}

fn bookworm(files: &[&str]) -> String {
    let mut s = String::from("BEGIN-DISTRIBUTION\tbookworm\tdists/bookworm\tstable\n");
    for f in files {
        s.push_str(&format!(
            "DISTFILE\tdists/bookworm\t{f}\t/srv/dists/bookworm/{f}\n"
        ));
    }
    s.push_str("END-DISTRIBUTION\tbookworm\tdists/bookworm\tstable\n");
    s
}

#[test]
fn one_log_makes_three_rounds_in_order() {
    let text = format!(
        "POOLNEW\tpool/main/a/a.deb\nPOOLNEW\tpool/main/b/b.deb\n{}POOLDELETE\tpool/main/c/c.deb\n",
        bookworm(&[
            "InRelease",
            "main/binary-amd64/Packages.gz",
            "Release",
            "main/binary-amd64/Release",
            "Release.gpg",
        ])
    );
    let plan = plan(&[log("1", &text)]);
    assert_eq!(
        paths(&plan.pool_uploads),
        ["pool/main/a/a.deb", "pool/main/b/b.deb"]
    );
    assert_eq!(plan.pool_uploads[0].action, Action::Upload);
    assert_eq!(paths(&plan.pool_deletes), ["pool/main/c/c.deb"]);
    let d = &plan.dist_dirs[0];
    assert_eq!(d.dir, r("dists/bookworm"));
    assert_eq!(d.uploads.len(), 5);
    assert!(
        d.uploads
            .iter()
            .all(|j| matches!(j.action, Action::UploadDotNew { .. }))
    );
    // Indices first (a component Release is an index), then Release and its signature,
    // InRelease last.
    assert_eq!(
        paths(&d.steps[Finalise::Indexes]),
        [
            "dists/bookworm/main/binary-amd64/Packages.gz",
            "dists/bookworm/main/binary-amd64/Release"
        ]
    );
    assert_eq!(
        paths(&d.steps[Finalise::Release]),
        ["dists/bookworm/Release", "dists/bookworm/Release.gpg"]
    );
    assert_eq!(
        paths(&d.steps[Finalise::InRelease]),
        ["dists/bookworm/InRelease"]
    );
    assert!(d.steps[Finalise::Deletions].is_empty());
    assert!(
        d.steps
            .iter()
            .flatten()
            .all(|j| matches!(j.action, Action::RenameDotNew { .. }))
    );
    assert_eq!(plan.remaining, vec![8]);
    assert!(plan.obsoleted.is_empty());
}

#[test]
fn dist_deletions_come_after_release_and_symlinks_with_the_indices() {
    let text = "BEGIN-DISTRIBUTION\tb\tdists/b\n\
DISTDELETE\tdists/b\tmain/binary-amd64/Packages.bz2\n\
DISTSYMLINK\tdists/b\tmain/current\tbinary-amd64\n\
DISTFILE\tdists/b\tRelease\t/x/Release\n\
END-DISTRIBUTION\tb\tdists/b\n";
    let plan = plan(&[log("1", text)]);
    let d = &plan.dist_dirs[0];
    assert_eq!(paths(&d.steps[Finalise::Indexes]), ["dists/b/main/current"]);
    assert_eq!(
        d.steps[Finalise::Indexes][0].action,
        Action::Symlink {
            target: Box::new("binary-amd64".into())
        }
    );
    assert_eq!(paths(&d.steps[Finalise::Release]), ["dists/b/Release"]);
    assert_eq!(
        paths(&d.steps[Finalise::Deletions]),
        ["dists/b/main/binary-amd64/Packages.bz2"]
    );
    assert_eq!(d.steps[Finalise::Deletions][0].action, Action::Delete);
}

#[test]
fn the_newest_log_wins_and_older_entries_are_obsoleted() {
    let old = format!(
        "POOLNEW\tpool/main/f/foo_1.deb\n{}",
        bookworm(&["Packages", "Release"])
    );
    let new = format!(
        "{}POOLDELETE\tpool/main/f/foo_1.deb\n",
        bookworm(&["Packages", "Release"])
    );
    let plan = plan(&[log("1", &old), log("2", &new)]);
    assert!(plan.pool_uploads.is_empty());
    assert_eq!(paths(&plan.pool_deletes), ["pool/main/f/foo_1.deb"]);
    assert_eq!(plan.pool_deletes[0].log, 1);
    let d = &plan.dist_dirs[0];
    assert!(d.uploads.iter().all(|j| j.log == 1));
    // The older entries are obsoleted once the newer ones are done, not before.
    assert!(plan.obsoleted.is_empty());
    let mut superseded: Vec<(String, Vec<usize>)> = plan
        .supersedes
        .iter()
        .map(|(p, logs)| (p.to_string(), logs.clone()))
        .collect();
    superseded.sort();
    assert_eq!(
        superseded,
        [
            ("dists/bookworm/Packages".to_string(), vec![0]),
            ("dists/bookworm/Release".to_string(), vec![0]),
            ("pool/main/f/foo_1.deb".to_string(), vec![0]),
        ]
    );
    assert_eq!(plan.remaining, vec![0, 3]);
}

#[test]
fn journalled_entries_are_skipped_and_asdotnew_ones_only_renamed() {
    let text = format!(
        "POOLNEW\tpool/a/a.deb\nPOOLNEW\tpool/b/b.deb\n{}\
DONE\tdone\tpool/a/a.deb\n\
DONE\tasdotnew\tdists/bookworm/Packages\n",
        bookworm(&["Packages", "Release"])
    );
    let plan = plan(&[log("1", &text)]);
    assert_eq!(paths(&plan.pool_uploads), ["pool/b/b.deb"]);
    let d = &plan.dist_dirs[0];
    assert_eq!(paths(&d.uploads), ["dists/bookworm/Release"]);
    assert_eq!(
        paths(&d.steps[Finalise::Indexes]),
        ["dists/bookworm/Packages"]
    );
    assert_eq!(
        d.steps[Finalise::Indexes][0].action,
        Action::RenameDotNew {
            local: std::sync::Arc::new(PathBuf::from("/srv/dists/bookworm/Packages"))
        }
    );
    assert_eq!(plan.remaining, vec![3]);
}

#[test]
fn a_newer_logs_finished_entry_still_obsoletes_older_ones() {
    let old = "POOLNEW\tpool/a/a.deb\n";
    let new = "POOLNEW\tpool/a/a.deb\nDONE\tdone\tpool/a/a.deb\n";
    let plan = plan(&[log("1", old), log("2", new)]);
    assert!(plan.is_empty());
    assert_eq!(plan.obsoleted, vec![(0, r("pool/a/a.deb"))]);
    assert_eq!(plan.remaining, vec![0, 0]);
}

#[test]
fn an_older_finished_entry_is_not_journalled_again() {
    let old = "POOLNEW\tpool/a/a.deb\nDONE\tdone\tpool/a/a.deb\n";
    let new = "POOLNEW\tpool/a/a.deb\n";
    let plan = plan(&[log("1", old), log("2", new)]);
    assert_eq!(paths(&plan.pool_uploads), ["pool/a/a.deb"]);
    assert!(plan.obsoleted.is_empty());
}

#[test]
fn within_one_log_the_last_line_for_a_path_wins_silently() {
    let text = "POOLNEW\tpool/a/a.deb\nPOOLDELETE\tpool/a/a.deb\n";
    let plan = plan(&[log("1", text)]);
    assert!(plan.pool_uploads.is_empty());
    assert_eq!(paths(&plan.pool_deletes), ["pool/a/a.deb"]);
    assert!(plan.obsoleted.is_empty());
    assert_eq!(plan.remaining, vec![1]);
}

#[test]
fn a_fully_journalled_log_has_nothing_left_but_pruning() {
    let text = "POOLNEW\tpool/a/a.deb\nPOOLDELETE\tpool/b/b.deb\n\
DONE\tdone\tpool/a/a.deb\nDONE\talready deleted\tpool/b/b.deb\n";
    let plan = plan(&[log("1", text)]);
    assert!(plan.pool_uploads.is_empty() && plan.pool_deletes.is_empty());
    // A run cut off after the deletion may not have pruned its directory yet.
    assert_eq!(plan.prune, BTreeSet::from([r("pool/b")]));
    assert_eq!(plan.remaining, vec![0]);
}

#[test]
fn several_dist_dirs_and_snapshots_are_planned_separately() {
    let text = "BEGIN-DISTRIBUTION\ta\tdists/a\nDISTFILE\tdists/a\tRelease\t/x\nEND-DISTRIBUTION\ta\tdists/a\n\
BEGIN-SNAPSHOT\ta\tdists/a/snapshots/s\ts\nDISTFILE\tdists/a/snapshots/s\tRelease\t/y\nEND-SNAPSHOT\ta\tdists/a/snapshots/s\ts\n\
BEGIN-DISTRIBUTION\tb\tdists/b\nDISTFILE\tdists/b\tRelease\t/z\nEND-DISTRIBUTION\tb\tdists/b\n";
    let plan = plan(&[log("1", text)]);
    let dirs: Vec<String> = plan.dist_dirs.iter().map(|d| d.dir.to_string()).collect();
    assert_eq!(dirs, ["dists/a", "dists/a/snapshots/s", "dists/b"]);
    assert_eq!(plan.jobs().count(), 6);
}

/// A log of `dists/b` with `lines` between BEGIN and END, then `journal` lines.
fn dist_b(lines: &[&str], journal: &[&str]) -> String {
    let mut s = String::from("BEGIN-DISTRIBUTION\tb\tdists/b\n");
    for l in lines {
        s.push_str(l);
        s.push('\n');
    }
    s.push_str("END-DISTRIBUTION\tb\tdists/b\n");
    for j in journal {
        s.push_str(j);
        s.push('\n');
    }
    s
}

const FILE_P: &str = "DISTFILE\tdists/b\tP\t/d/b/P";
const FILE_Q: &str = "DISTFILE\tdists/b\tQ\t/d/b/Q";

fn owned(pairs: &[(usize, &str)]) -> Vec<(usize, String)> {
    pairs.iter().map(|(n, s)| (*n, s.to_string())).collect()
}

fn dot_new_removals(plan: &Plan) -> Vec<(usize, String)> {
    plan.dist_dirs
        .iter()
        .flat_map(|d| &d.steps[Finalise::Deletions])
        .filter(|j| j.path.file_name().ends_with(".new"))
        .map(|j| {
            // Ours, not the repository's: removed at once, never held back.
            assert_eq!(j.action, Action::RemoveStale);
            (j.log, j.path.to_string())
        })
        .collect()
}

#[test]
fn an_older_dot_new_that_a_newer_deletion_or_symlink_strands_is_removed() {
    let newer = dist_b(
        &["DISTDELETE\tdists/b\tP", "DISTSYMLINK\tdists/b\tQ\tR"],
        &[],
    );
    // Journalled asdotnew, or not journalled at all (a killed run may have left it).
    for journal in [
        &["DONE\tasdotnew\tdists/b/P", "DONE\tasdotnew\tdists/b/Q"][..],
        &[],
    ] {
        let older = dist_b(&[FILE_P, FILE_Q], journal);
        let plan = plan(&[log("1", &older), log("2", &newer)]);
        assert_eq!(
            dot_new_removals(&plan),
            owned(&[(0, "dists/b/P.new"), (0, "dists/b/Q.new")])
        );
        assert_eq!(plan.remaining, vec![2, 2], "the older log waits for them");
        assert!(plan.dist_dirs[0].uploads.is_empty());
    }
}

#[test]
fn no_dot_new_removal_where_none_can_be_left() {
    let delete_p = dist_b(&["DISTDELETE\tdists/b\tP"], &[]);
    for (older, newer) in [
        // Renamed into place already: no .new left.
        (
            dist_b(&[FILE_P], &["DONE\tdone\tdists/b/P"]),
            delete_p.clone(),
        ),
        // Removed already.
        (
            dist_b(
                &[FILE_P],
                &["DONE\tobsoleted\tdists/b/P", "DONE\tdeleted\tdists/b/P.new"],
            ),
            delete_p.clone(),
        ),
        // A newer upload of the same path overwrites the .new and renames it.
        (
            dist_b(&[FILE_P], &["DONE\tasdotnew\tdists/b/P"]),
            dist_b(&[FILE_P], &[]),
        ),
    ] {
        let plan = plan(&[log("1", &older), log("2", &newer)]);
        assert_eq!(dot_new_removals(&plan), [], "{older}");
    }
    // A later line of the same log is the same run's: nothing was left by an older one.
    let same = dist_b(&[FILE_P, "DISTDELETE\tdists/b\tP"], &[]);
    assert_eq!(dot_new_removals(&plan(&[log("1", &same)])), []);
}

#[test]
fn a_dot_new_left_by_two_older_logs_is_removed_once() {
    let older = dist_b(&[FILE_P], &["DONE\tasdotnew\tdists/b/P"]);
    let newer = dist_b(&["DISTDELETE\tdists/b\tP"], &[]);
    let plan = plan(&[log("1", &older), log("2", &older), log("3", &newer)]);
    assert_eq!(dot_new_removals(&plan), owned(&[(1, "dists/b/P.new")]));
    assert_eq!(plan.supersedes[&r("dists/b/P.new")], vec![0]);
    assert_eq!(plan.remaining, vec![0, 1, 1]);
}

#[test]
fn held_back_deletions_are_the_repositorys_not_our_stale_dot_new_files() {
    // The newer log deletes P, whose .new an older, cut-off run left: P is the
    // repository's deletion (held), P.new ours (removed at once).
    let older = dist_b(&[FILE_P], &["DONE\tasdotnew\tdists/b/P"]);
    let newer = format!(
        "POOLDELETE\tpool/main/f/foo/foo_1.0_all.deb\n{}",
        dist_b(&["DISTDELETE\tdists/b\tP"], &[])
    );
    let mut plan = plan(&[log("1", &older), log("2", &newer)]);
    let held = plan.take_deletions();
    assert_eq!(paths(&held.pool), ["pool/main/f/foo/foo_1.0_all.deb"]);
    assert_eq!(held.dists.len(), plan.dist_dirs.len());
    assert_eq!(paths(&held.dists[0]), ["dists/b/P"]);
    assert!(plan.pool_deletes.is_empty());
    assert_eq!(dot_new_removals(&plan), owned(&[(0, "dists/b/P.new")]));
}

#[test]
fn a_job_is_small_a_plan_holds_one_per_file() {
    assert!(std::mem::size_of::<Action>() <= 16);
    assert!(std::mem::size_of::<Job>() <= 48);
}

#[test]
fn pool_claims_grow_and_find_every_path_by_the_line_that_claimed_it() {
    let text: String = (0..500)
        .map(|k| format!("POOLNEW\tpool/main/p/d{}/f{k}\n", k % 13))
        .collect();
    let logs = [log("a", &text), log("b", &text)];
    let mut claims = PoolClaims::with_capacity(0);
    for (at, (_, line)) in logs[1].lines.iter().enumerate() {
        let Line::PoolNew(path) = line else { panic!() };
        let claim = Claim {
            log: 1,
            finished: at % 2 == 0,
            ends_file: false,
        };
        assert!(claims.get(&logs, path).is_none());
        claims.insert(&logs, path, at as u32, claim);
    }
    assert!(claims.slots.len() >= 512, "grown to {}", claims.slots.len());
    // Found from the other log's equal paths (held otherwise: shared directories).
    for (at, (_, line)) in logs[0].lines.iter().enumerate() {
        let Line::PoolNew(path) = line else { panic!() };
        let claim = claims.get(&logs, path).unwrap();
        assert_eq!((claim.log, claim.finished), (1, at % 2 == 0));
    }
    assert!(claims.get(&logs, &r("pool/main/p/d0/f13x")).is_none());
}
