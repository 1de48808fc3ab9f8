//! `--bwlimit`: a push holds to the rate, over the real pipes of OpenSSH's `sftp-server`.

use std::fs;
use std::time::{Duration, Instant};

use crate::repo::Repo;
use crate::support;

#[test]
fn a_mirror_with_bwlimit_takes_as_long_as_the_rate_says_and_the_files_arrive_whole() {
    let repo = Repo::new();
    let dir = repo.base().join("pool/main/b/big");
    fs::create_dir_all(&dir).unwrap();
    fs::create_dir_all(repo.base().join("dists")).unwrap();
    // 4 MiB in four files at 1 MiB/s: at least about 3.9 s (a tenth of a second may go at
    // once).
    for k in 0..4u8 {
        fs::write(dir.join(format!("f{k}")), support::pattern(1 << 20, k)).unwrap();
    }
    let started = Instant::now();
    let ran = repo.hook(&["--basedir", ".", "--bwlimit", "1M", "mirror", "pool"]);
    let took = started.elapsed();
    ran.expect(0);
    assert!(
        took >= Duration::from_millis(3500),
        "4 MiB at 1 MiB/s in {took:?}"
    );
    for k in 0..4u8 {
        let remote = fs::read(repo.remote().join(format!("pool/main/b/big/f{k}"))).unwrap();
        assert!(remote == support::pattern(1 << 20, k), "f{k} arrived whole");
    }

    // The conf key does the same (--bwlimit 0 lifting it: see the config tests).
    let conf = fs::read_to_string(repo.base().join("conf/outsftphook.conf")).unwrap();
    repo.set_conf(&format!("{conf}bwlimit 1M\n"));
    fs::remove_dir_all(repo.remote().join("pool")).unwrap();
    let started = Instant::now();
    repo.hook(&["--basedir", ".", "mirror", "pool"]).expect(0);
    assert!(
        started.elapsed() >= Duration::from_millis(3500),
        "the conf's bwlimit holds"
    );
}
