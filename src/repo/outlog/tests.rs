//! The parser eats byte literals: every keyword, every malformed line (with its line number),
//! torn journal lines, random bytes.
use super::*;

fn p(bytes: &[u8]) -> Result<Outlog, ParseError> {
    parse(Path::new("logs/1-x.outlog"), bytes)
}

fn err(bytes: &[u8]) -> (usize, String) {
    let e = p(bytes).expect_err("should be refused");
    assert_eq!(e.file, Path::new("logs/1-x.outlog"));
    (e.line, e.problem.to_string())
}

fn r(s: &str) -> RelPath {
    RelPath::new(s).unwrap()
}

const DIST: &[u8] = b"POOLNEW\tpool/main/f/foo/foo_1.0_amd64.deb\n\
BEGIN-DISTRIBUTION\tbookworm\tdists/bookworm\tstable\n\
DISTFILE\tdists/bookworm\tmain/binary-amd64/Packages.gz\t./dists/bookworm/main/binary-amd64/Packages.gz\n\
DISTSYMLINK\tdists/bookworm\tmain/Contents\t../bookworm/x\n\
DISTDELETE\tdists/bookworm\tmain/binary-amd64/Packages.bz2\n\
DISTKEEP\tdists/bookworm\tRelease.gpg\n\
DISTFILE\tdists/bookworm\tRelease\t/srv/repo/dists/bookworm/Release\n\
END-DISTRIBUTION\tbookworm\tdists/bookworm\tstable\n\
BEGIN-SNAPSHOT\tbookworm\tdists/bookworm/snapshots/s1\ts1\n\
DISTFILE\tdists/bookworm/snapshots/s1\tRelease\t/r/Release\n\
END-SNAPSHOT\tbookworm\tdists/bookworm/snapshots/s1\ts1\n\
POOLDELETE\tpool/main/f/foo/foo_0.9_amd64.deb\n\
DONE\tdone\tpool/main/f/foo/foo_1.0_amd64.deb\n\
DONE\tasdotnew\tdists/bookworm/Release\n\
DONE\talready deleted\tpool/main/f/foo/foo_0.9_amd64.deb\n";

#[test]
fn every_keyword_parses_into_its_variant() {
    let log = p(DIST).unwrap();
    let lines: Vec<&Line> = log.lines.iter().map(|(_, l)| l).collect();
    assert_eq!(lines.len(), 15);
    assert_eq!(
        lines[0],
        &Line::PoolNew(r("pool/main/f/foo/foo_1.0_amd64.deb"))
    );
    assert_eq!(
        lines[1],
        &Line::Begin(Box::new(Section {
            kind: SectionKind::Distribution,
            codename: "bookworm".into(),
            dir: r("dists/bookworm"),
            extra: Some("stable".into()),
        }))
    );
    assert_eq!(
        lines[2],
        &Line::DistFile {
            dir: Box::new(r("dists/bookworm")),
            name: Box::new(r("main/binary-amd64/Packages.gz")),
            local: Box::new("./dists/bookworm/main/binary-amd64/Packages.gz".into()),
        }
    );
    assert_eq!(
        lines[3],
        &Line::DistSymlink {
            dir: Box::new(r("dists/bookworm")),
            name: Box::new(r("main/Contents")),
            target: Box::new("../bookworm/x".into()),
        }
    );
    assert!(matches!(lines[4], Line::DistDelete { .. }));
    assert!(matches!(lines[5], Line::DistKeep { .. }));
    assert!(matches!(lines[7], Line::End(_)));
    assert!(matches!(
        lines[8],
        Line::Begin(section) if section.kind == SectionKind::Snapshot
    ));
    assert_eq!(
        lines[11],
        &Line::PoolDelete(r("pool/main/f/foo/foo_0.9_amd64.deb"))
    );
    assert_eq!(
        lines[13],
        &Line::Done {
            mirror: None,
            message: DoneMessage::AsDotNew,
            path: r("dists/bookworm/Release")
        }
    );
    assert_eq!(
        lines[14],
        &Line::Done {
            mirror: None,
            message: DoneMessage::AlreadyDeleted,
            path: r("pool/main/f/foo/foo_0.9_amd64.deb")
        }
    );
    assert_eq!(log.lines[14].0, 15, "line numbers are 1-based");
}

#[test]
fn an_empty_file_is_an_empty_log() {
    assert!(p(b"").unwrap().lines.is_empty());
}

#[test]
fn a_distribution_without_suite_parses() {
    let log =
        p(b"BEGIN-DISTRIBUTION\ttrixie\tdists/trixie\nEND-DISTRIBUTION\ttrixie\tdists/trixie\n")
            .unwrap();
    assert!(matches!(
        &log.lines[0].1,
        Line::Begin(section) if section.extra.is_none()
    ));
}

#[test]
fn each_malformation_names_its_line() {
    let cases: &[(&[u8], usize, &str)] = &[
        (b"POOLNEW\tpool/a/b\nPOOLNEW\tpool/a/c", 2, "does not end in a newline"),
        (b"POOLNEW\tpool/a/b\nPOOLNEW\n", 2, "POOLNEW takes 1 fields, found 0"),
        (b"POOLNEW\tpool/a\tx\n", 1, "takes 1 fields, found 2"),
        (b"FROB\tx\n", 1, "unknown keyword \"FROB\""),
        (b"\n", 1, "empty line"),
        (b"POOLNEW\t\n", 1, "field 1 is empty"),
        (b"POOLNEW\tpool/\xff\n", 1, "not valid UTF-8"),
        (b"POOLNEW\tpool/../etc/passwd\n", 1, "'..' component"),
        (b"POOLNEW\t/etc/passwd\n", 1, "absolute path"),
        (b"POOLNEW\tpool/./x\n", 1, "'.' component"),
        (b"POOLNEW\tpool//x\n", 1, "empty component"),
        (b"POOLNEW\tdists/x/Release\n", 1, "not below pool/"),
        (b"POOLDELETE\tpool\n", 1, "not below pool/"),
        (b"DISTFILE\tdists/a\tRelease\t/x\n", 1, "outside BEGIN/END"),
        (
            b"BEGIN-DISTRIBUTION\ta\tdists/a\nDISTFILE\tdists/b\tRelease\t/x\nEND-DISTRIBUTION\ta\tdists/a\n",
            2,
            "names dists/b, but the open section is dists/a",
        ),
        (
            b"BEGIN-DISTRIBUTION\ta\tdists/a\nDISTFILE\tdists/a\t../../x\t/x\n",
            2,
            "'..' component",
        ),
        (
            b"BEGIN-DISTRIBUTION\ta\tdists/a\nDISTSYMLINK\tdists/a\tx\t../../../etc\n",
            2,
            "leads out of the repository",
        ),
        (
            b"BEGIN-DISTRIBUTION\ta\tdists/a\nDISTSYMLINK\tdists/a\tx\t/etc/passwd\n",
            2,
            "is absolute",
        ),
        (
            b"BEGIN-DISTRIBUTION\ta\tdists/a\nPOOLNEW\tpool/a/b\n",
            1,
            "BEGIN for dists/a has no matching END",
        ),
        (
            b"BEGIN-DISTRIBUTION\ta\tdists/a\nBEGIN-DISTRIBUTION\tb\tdists/b\n",
            2,
            "inside the section of dists/a",
        ),
        (b"END-DISTRIBUTION\ta\tdists/a\n", 1, "without BEGIN"),
        (
            b"BEGIN-DISTRIBUTION\ta\tdists/a\nEND-DISTRIBUTION\tb\tdists/b\n",
            2,
            "does not match the BEGIN for dists/a",
        ),
        (b"BEGIN-SNAPSHOT\ta\tdists/a/snapshots/x\n", 1, "takes 3 fields, found 2"),
        (b"BEGIN-DISTRIBUTION\ta\t../a\n", 1, "'..' component"),
        (b"DONE\tfinished\tpool/a/b\n", 1, "unknown DONE message \"finished\""),
        (b"DONE\tdone\t../x\n", 1, "'..' component"),
        (b"DONE\tdone\n", 1, "DONE takes 2 fields"),
        (b"POOLNEW\tpool/a\0b\n", 1, "NUL"),
    ];
    for (bytes, line, needle) in cases {
        let (got_line, message) = err(bytes);
        assert_eq!(
            got_line,
            *line,
            "{:?}: {message}",
            String::from_utf8_lossy(bytes)
        );
        assert!(
            message.contains(needle),
            "{:?}: {message:?} lacks {needle:?}",
            String::from_utf8_lossy(bytes)
        );
    }
}

#[test]
fn huge_lines_are_refused_without_reading_them_whole_into_a_string() {
    let mut bytes = b"POOLNEW\tpool/".to_vec();
    bytes.extend(std::iter::repeat_n(b'a', MAX_LINE_LEN + 1));
    bytes.push(b'\n');
    let (line, message) = err(&bytes);
    assert_eq!(line, 1);
    assert!(message.contains("longer than"), "{message}");
}

#[test]
fn the_error_message_starts_with_file_and_line() {
    let e = p(b"POOLNEW\tpool/a/b\nBAD\n").unwrap_err();
    assert_eq!(e.to_string(), "logs/1-x.outlog:2: unknown keyword \"BAD\"");
}

#[test]
fn random_bytes_never_panic() {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..5000 {
        let mut bytes = DIST.to_vec();
        for _ in 0..1 + next() % 6 {
            let i = (next() as usize) % bytes.len();
            bytes[i] = [b'\t', b'\n', b'/', b'.', 0, 0xff, b'x'][(next() % 7) as usize];
        }
        let _ = p(&bytes);
    }
}

#[test]
fn a_torn_last_journal_line_is_taken_as_unwritten() {
    let whole = b"POOLNEW\tpool/a/b\nPOOLNEW\tpool/c/d\nDONE\tdone\tpool/a/b\n";
    let line = b"DONE\talready deleted\tpool/c/d\n";
    // Cut anywhere short of its newline, after one whole journal line.
    for cut in 1..line.len() {
        let bytes = [&whole[..], &line[..cut]].concat();
        let log = p(&bytes).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        assert_eq!(log.lines.len(), 3, "cut at {cut}");
        assert_eq!(
            log.torn_tail,
            Some(TornTail {
                line: 4,
                offset: whole.len() as u64
            })
        );
    }
    // The first journal line, torn after at least "DO": reprepro writes no DONE lines.
    let reprepros = &whole[..whole.len() - b"DONE\tdone\tpool/a/b\n".len()];
    for cut in 2..line.len() {
        let bytes = [reprepros, &line[..cut]].concat();
        let log = p(&bytes).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        assert_eq!(
            log.torn_tail.map(|t| t.offset),
            Some(reprepros.len() as u64)
        );
    }
    // A whole log has no torn tail.
    assert_eq!(p(whole).unwrap().torn_tail, None);
}

#[test]
fn a_torn_journal_line_of_another_mirror_is_taken_as_unwritten_too() {
    let whole = b"POOLNEW\tpool/a/b\nDONE\tdone\tpool/a/b\n";
    let line = b"DONE@offsite\tdone\tpool/a/b\n";
    for cut in 1..line.len() {
        let bytes = [&whole[..], &line[..cut]].concat();
        let log = p(&bytes).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        assert_eq!(log.torn_tail.map(|t| t.offset), Some(whole.len() as u64));
    }
    let done = p(&[&whole[..], &line[..]].concat()).unwrap();
    assert_eq!(
        done.lines.last().map(|(_, l)| l),
        Some(&Line::Done {
            mirror: Some(Box::new("offsite".into())),
            message: DoneMessage::Done,
            path: r("pool/a/b")
        })
    );
    // Not a mirror's name: an error as any unterminated line.
    assert!(p(&[&whole[..], b"DONE@../x\tdone"].concat()).is_err());
}

#[test]
fn a_torn_line_that_may_be_reprepros_or_in_the_middle_is_still_an_error() {
    let reprepros = b"POOLNEW\tpool/a/b\n";
    for tail in [
        &b"D"[..],      // a torn DISTFILE or DISTDELETE as much as a torn DONE
        b"POOLNEW\tpo", // reprepro's own
        b"DONX",        // not a journal line
        b"DISTFILE\td",
    ] {
        let bytes = [&reprepros[..], tail].concat();
        assert_eq!(
            err(&bytes),
            (
                2,
                "the last line does not end in a newline (truncated file?)".into()
            ),
            "{:?}",
            String::from_utf8_lossy(tail)
        );
    }
    // A torn line that a later run appended to is no longer the last line.
    let (line, message) = err(b"POOLNEW\tpool/a/b\nDONE\tdoDONE\tdone\tpool/a/b\n");
    assert_eq!(line, 2);
    assert!(message.contains("DONE takes 2 fields"), "{message}");
    // Inside an unfinished section the log itself is cut short.
    let (line, message) = err(b"BEGIN-DISTRIBUTION\tb\tdists/b\nDONE\tdone\tpool/a");
    assert_eq!(line, 1);
    assert!(message.contains("no matching END"), "{message}");
}

#[test]
fn errors_are_typed_and_carry_their_line() {
    let e = p(b"POOLNEW\tpool/a/b\nDONE\tdone\n").unwrap_err();
    assert_eq!(e.line, 2);
    assert_eq!(
        e.problem,
        Problem::FieldCount {
            keyword: "DONE",
            want: &[2],
            found: 1
        }
    );
    let e = p(b"BEGIN-DISTRIBUTION\ta\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "logs/1-x.outlog:1: BEGIN-DISTRIBUTION takes 2 or 3 fields, found 1"
    );
    let e = p(b"BEGIN-DISTRIBUTION\ta\tdists/a\nDISTSYMLINK\tdists/a\tx\t/etc\n").unwrap_err();
    assert_eq!(
        (e.line, e.problem),
        (
            2,
            Problem::BadSymlinkTarget(crate::relpath::SymlinkTargetError::Absolute("/etc".into()))
        )
    );
}

#[test]
fn a_line_is_small_an_outlog_may_have_100_000() {
    assert!(std::mem::size_of::<Line>() <= 64);
}

#[test]
fn a_line_is_small_whatever_its_kind() {
    // An outlog of 100 000 lines: pool paths and journal lines, a line each.
    assert!(std::mem::size_of::<Line>() <= 40);
}
