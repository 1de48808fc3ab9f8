//! Local sources that change while a run is under way: reprepro writes a new `Release` and
//! renames it into place, or a file is truncated. What lands is always one whole file as it
//! was when its upload opened it, never the first bytes of a new one cut to the length the
//! run saw before.

use std::fs;

use outsftphook::{Engine, EngineConfig, Op};

use crate::support::{Sandbox, pattern, rpath};

/// Stats `local` the way a run does before it starts (for spreading and progress), then
/// lets `change` replace it, then uploads it: returns what landed.
fn upload_after_a_change(greenend: bool, change: impl FnOnce(&std::path::Path)) -> Vec<u8> {
    let sandbox = Sandbox::new();
    let local = sandbox.local_file("Release", 3000, 1);
    let server = if greenend {
        sandbox.greenend()
    } else {
        sandbox.openssh()
    };
    let mut engine = Engine::connect(&server, EngineConfig::default()).unwrap();
    let ops = [Op::Upload {
        local: local.clone(),
        remote: rpath("Release"),
        fsync: true,
        mtime: None,
    }];
    assert_eq!(engine.source_sizes(&ops), [Some(3000)]);
    change(&local);
    let results = engine.run(&ops, |_, _| {}).unwrap();
    engine.close();
    assert!(results[0].is_ok(), "{results:?}");
    fs::read(sandbox.remote().join("Release")).unwrap()
}

#[test]
fn a_source_replaced_by_a_larger_file_is_sent_whole_as_it_is_now() {
    for greenend in [false, true] {
        let landed = upload_after_a_change(greenend, |local| {
            let new = local.with_extension("tmp");
            fs::write(&new, pattern(3500, 2)).unwrap();
            fs::rename(&new, local).unwrap();
        });
        assert_eq!(landed, pattern(3500, 2), "greenend {greenend}");
    }
}

#[test]
fn a_source_replaced_by_a_smaller_file_is_sent_whole_as_it_is_now() {
    for greenend in [false, true] {
        let landed = upload_after_a_change(greenend, |local| {
            fs::write(local, pattern(100, 3)).unwrap();
        });
        assert_eq!(landed, pattern(100, 3), "greenend {greenend}");
    }
}
