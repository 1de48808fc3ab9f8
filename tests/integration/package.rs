//! The Debian package and the systemd units: the paths they name agree with each other and
//! with the docs, and the units' command line is one the binary runs. The package itself is
//! built, installed, linted and used by `.ci/run`; `systemd-analyze` checks the units there.

use crate::repo::Repo;
use std::fs;
use std::path::Path;

/// Where the package puts the binary, and so what the units and the docs name.
const INSTALLED: &str = "/usr/bin/outsftphook";

fn read(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `[package.metadata.deb]` assets as (source, destination) pairs.
fn assets() -> Vec<(String, String)> {
    let manifest = read("Cargo.toml");
    let section = manifest
        .split("[package.metadata.deb]")
        .nth(1)
        .expect("Cargo.toml has [package.metadata.deb]");
    let list = section.split("assets = [").nth(1).expect("deb assets");
    let list = &list[..list.find("\n]").expect("end of the assets")];
    list.lines()
        .filter(|l| l.trim_start().starts_with('['))
        .map(|l| {
            let fields: Vec<&str> = l.split('"').skip(1).step_by(2).collect();
            (fields[0].to_string(), fields[1].to_string())
        })
        .collect()
}

/// The `Key=` lines of a unit in contrib/systemd.
fn unit_values(unit: &str, key: &str) -> Vec<String> {
    read(&format!("contrib/systemd/{unit}"))
        .lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_package_installs_what_the_units_and_the_docs_name() {
    let assets = assets();
    let dest = |src: &str| {
        assets
            .iter()
            .find(|(s, _)| s == src)
            .unwrap_or_else(|| panic!("{src} is not in the package: {assets:?}"))
            .1
            .clone()
    };
    assert_eq!(dest("target/release/outsftphook"), "usr/bin/");
    for (src, _) in &assets {
        if !src.starts_with("target/") {
            assert!(
                Path::new(env!("CARGO_MANIFEST_DIR")).join(src).is_file(),
                "{src} is packaged but missing"
            );
        }
    }
    // Debian's vendor directories, where the shells look without configuration.
    for (src, to) in [
        (
            "contrib/completions/outsftphook.bash",
            "usr/share/bash-completion/completions/outsftphook",
        ),
        (
            "contrib/completions/_outsftphook",
            "usr/share/zsh/vendor-completions/",
        ),
        (
            "contrib/completions/outsftphook.fish",
            "usr/share/fish/vendor_completions.d/",
        ),
        (
            "contrib/systemd/outsftphook-retry@.service",
            "usr/lib/systemd/system/",
        ),
        (
            "contrib/systemd/outsftphook-retry@.timer",
            "usr/lib/systemd/system/",
        ),
        (
            "contrib/outsftphook.conf.example",
            "usr/share/doc/outsftphook/examples/outsftphook.conf",
        ),
    ] {
        assert_eq!(dest(src), to, "{src}");
    }

    let exec = unit_values("outsftphook-retry@.service", "ExecStart");
    assert_eq!(exec.len(), 1, "{exec:?}");
    assert!(
        exec[0].starts_with(&format!("{INSTALLED} ")),
        "the unit runs {} (the package installs {INSTALLED})",
        exec[0]
    );
    let hook = format!("outhook {INSTALLED}");
    assert!(
        read("man/outsftphook.1").contains(&hook),
        "man page: {hook}"
    );
    assert!(read("README.md").contains(&hook), "README: {hook}");
}

#[test]
fn the_units_command_line_pushes_a_pending_log() {
    // ExecStart with the instance's base dir (/srv/%i) pointing at a real repository.
    let exec = unit_values("outsftphook-retry@.service", "ExecStart");
    let repo = Repo::new();
    repo.pending_include("foo", "1.0");
    let base = repo.base();
    let args: Vec<String> = exec[0]
        .split_whitespace()
        .skip(1)
        .map(|a| a.replace("/srv/%i", base.to_str().unwrap()))
        .collect();
    assert!(args.iter().all(|a| !a.contains('%')), "{args:?}");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    repo.hook(&args).expect(0);
    assert!(repo.outlogs().is_empty(), "{:?}", repo.outlogs());
    repo.assert_mirrored(&[]);
}

#[test]
fn the_service_is_confined_to_the_log_dir_of_its_base_dir() {
    let unit = "outsftphook-retry@.service";
    let exec = unit_values(unit, "ExecStart");
    let base = exec[0]
        .split_whitespace()
        .skip_while(|a| *a != "--basedir")
        .nth(1)
        .expect("--basedir in ExecStart");
    // "-": a missing log dir is outsftphook's to report (exit 2), not a namespace failure.
    assert_eq!(
        unit_values(unit, "ReadWritePaths"),
        [format!("-{base}/logs")]
    );
    for (key, value) in [
        ("ProtectSystem", "strict"),
        ("ProtectHome", "read-only"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
    ] {
        assert_eq!(unit_values(unit, key), [value], "{key}");
    }
    // No stock system has a user for the repository: a drop-in names it (see the unit).
    assert!(unit_values(unit, "User").is_empty());
    assert!(read(&format!("contrib/systemd/{unit}")).contains("#   User=repo"));
}
