//! Resolution in a fake world: the environment and the files are a test's maps.
use std::collections::HashMap;

use clap::Parser;

use super::*;

/// A fake world: environment variables and files.
struct World {
    env: HashMap<&'static str, &'static str>,
    files: HashMap<PathBuf, String>,
}

impl World {
    fn new() -> World {
        World {
            env: HashMap::new(),
            files: HashMap::new(),
        }
    }

    fn file(mut self, path: &str, text: &str) -> World {
        self.files.insert(PathBuf::from(path), text.to_owned());
        self
    }

    fn env(mut self, name: &'static str, value: &'static str) -> World {
        self.env.insert(name, value);
        self
    }

    fn resolve(&self, argv: &[&str]) -> Result<Settings, ConfigError> {
        let mut full = vec!["outsftphook"];
        full.extend_from_slice(argv);
        let args = Args::try_parse_from(full).unwrap();
        let env = |name: &str| self.env.get(name).map(OsString::from);
        let read = |p: &Path| Ok(self.files.get(p).cloned());
        resolve(&args, &env, &read)
    }

    fn mirrors(&self, argv: &[&str]) -> Result<Vec<Settings>, ConfigError> {
        let mut full = vec!["outsftphook"];
        full.extend_from_slice(argv);
        let args = Args::try_parse_from(full).unwrap();
        let env = |name: &str| self.env.get(name).map(OsString::from);
        let read = |p: &Path| Ok(self.files.get(p).cloned());
        resolve_mirrors(&args, &env, &read)
    }
}

/// The settings of every mirror of `conf`, or the message of its error.
fn mirrors(conf: &str, argv: &[&str]) -> Result<Vec<Settings>, String> {
    let mut all = vec!["-b", "/r"];
    all.extend_from_slice(argv);
    World::new()
        .file("/r/conf/outsftphook.conf", conf)
        .mirrors(&all)
        .map_err(|e| e.to_string())
}

fn names(settings: &[Settings]) -> Vec<&str> {
    settings.iter().map(|s| s.mirror.name.as_str()).collect()
}

fn ssh(user: Option<&str>, host: &str) -> ServerCommand {
    ServerCommand::Ssh {
        ssh: vec!["ssh".into()],
        options: vec![],
        user: user.map(OsString::from),
        host: host.into(),
        kept: None,
    }
}

const CONF: &str =
    "# the mirror\nservername mirror.example.org\nusername repo\ntargetdir /srv/mirror/\n";

#[test]
fn basedir_gives_the_other_directories() {
    let s = World::new()
        .file("/r/conf/outsftphook.conf", CONF)
        .resolve(&["--basedir", "/r"])
        .unwrap();
    assert_eq!(s.outdir, Path::new("/r"));
    assert_eq!(s.logdir, Path::new("/r/logs"));
    assert_eq!(s.confdir, Path::new("/r/conf"));
    assert_eq!(s.targetdir, Some(RemotePath::new("/srv/mirror").unwrap()));
    assert_eq!(
        s.server,
        ServerCommand::Ssh {
            ssh: vec!["ssh".into()],
            options: vec![],
            user: Some("repo".into()),
            host: "mirror.example.org".into(),
            kept: None,
        }
    );
    assert!(s.autoretry, "autoretry is on by default");
    assert!(!s.keepdirectories);
    assert!(s.posix_rename);
    assert_eq!(s.max_open_files, None, "chosen from the round trip");
    assert_eq!(s.timeout, DEFAULT_TIMEOUT);
}

#[test]
fn reprepros_environment_is_used_and_flags_still_win() {
    let w = World::new()
        .env("REPREPRO_OUT_DIR", "/o")
        .env("REPREPRO_LOG_DIR", "/l")
        .env("REPREPRO_CONFIG_DIR", "/c")
        .env("REPREPRO_BASE_DIR", "/b")
        .file("/c/outsftphook.conf", CONF);
    let s = w.resolve(&["/l/1-x.outlog"]).unwrap();
    assert_eq!(
        (s.outdir.as_path(), s.logdir.as_path(), s.confdir.as_path()),
        (Path::new("/o"), Path::new("/l"), Path::new("/c"))
    );
    let s = w
        .resolve(&["--outdir=/flag", "-v", "/l/1-x.outlog"])
        .unwrap();
    assert_eq!(s.outdir, Path::new("/flag"));
    assert_eq!(s.verbose, 1);
}

#[test]
fn options_file_directories_apply_below_flags_and_environment() {
    let w = World::new()
        .file("/r/conf/options", "# reprepro options\noutdir +b/www\n--logdir /var/log/r\nverbose\noutsftphook ignored\n")
        .file("/r/conf/outsftphook.conf", CONF);
    let s = w.resolve(&["-b", "/r"]).unwrap();
    assert_eq!(s.outdir, Path::new("/r/www"));
    assert_eq!(s.logdir, Path::new("/var/log/r"));
    let s = w.resolve(&["-b", "/r", "--logdir", "/x"]).unwrap();
    assert_eq!(s.logdir, Path::new("/x"));
}

#[test]
fn reprepros_dist_and_db_dirs_follow_its_defaults_options_and_environment() {
    let w = World::new().file("/r/conf/outsftphook.conf", CONF);
    let s = w.resolve(&["-b", "/r", "--pending"]).unwrap();
    assert_eq!(s.distdir, Path::new("/r/dists"));
    assert_eq!(s.dbdir.as_deref(), Some(Path::new("/r/db")));
    assert!(!s.reprepro_env, "run by hand");
    let s = w
        .resolve(&["-b", "/r", "--outdir", "/o", "--pending"])
        .unwrap();
    assert_eq!(s.distdir, Path::new("/o/dists"), "+o/dists");
    let w = w.file("/r/conf/options", "distdir +b/d\ndbdir /var/lib/r/db\n");
    let s = w.resolve(&["-b", "/r", "--pending"]).unwrap();
    assert_eq!(s.distdir, Path::new("/r/d"));
    assert_eq!(s.dbdir.as_deref(), Some(Path::new("/var/lib/r/db")));
    let w = w
        .env("REPREPRO_DIST_DIR", "/e/dists")
        .env("REPREPRO_LOG_DIR", "/r/logs");
    let s = w.resolve(&["-b", "/r", "/r/logs/1-x.outlog"]).unwrap();
    assert_eq!(s.distdir, Path::new("/e/dists"));
    assert!(s.reprepro_env);
    // An administrator's REPREPRO_BASE_DIR (reprepro reads it too) is not reprepro's call.
    let s = World::new()
        .env("REPREPRO_BASE_DIR", "/r")
        .file("/r/conf/outsftphook.conf", CONF)
        .resolve(&["--pending"])
        .unwrap();
    assert!(!s.reprepro_env);
    assert_eq!(s.dbdir.as_deref(), Some(Path::new("/r/db")));
}

#[test]
fn messages_can_tell_where_a_directory_came_from_and_the_retry_command() {
    let w = World::new()
        .file("/r/conf/options", "outdir /srv/www\n")
        .file("/r/conf/outsftphook.conf", CONF);
    let s = w.resolve(&["-b", "/r", "--pending"]).unwrap();
    assert_eq!(s.outdir_from, "'outdir' in /r/conf/options");
    assert_eq!(s.logdir_from, "BASEDIR/logs");
    assert_eq!(
        s.pending_command(),
        "outsftphook --basedir /r --outdir /srv/www --pending"
    );
    let s = w
        .env("REPREPRO_OUT_DIR", "/o")
        .resolve(&["-b", "/r", "--pending"]);
    assert_eq!(s.unwrap().outdir_from, "REPREPRO_OUT_DIR");
    let s = World::new()
        .file("/r/conf/outsftphook.conf", CONF)
        .resolve(&["-b", "/r", "--logdir", "/l", "--pending"])
        .unwrap();
    assert_eq!(
        (s.outdir_from.as_str(), s.logdir_from.as_str()),
        ("the base dir", "--logdir")
    );
    assert_eq!(
        s.pending_command(),
        "outsftphook --basedir /r --logdir /l --pending"
    );
}

#[test]
fn conf_file_keys_and_values() {
    let conf = "sftpcommand /usr/lib/openssh/sftp-server -d /srv/m\nverbose yes\nautoretry off\n\
debug 2\nmaxopenfiles 7\ntimeout 30\nkeepdirectories true\nposixrename no\nconnections 3\nwindow 3M\ninorder no\nsymlinks copy\n";
    let s = World::new()
        .file("/r/conf/outsftphook.conf", conf)
        .resolve(&["-b", "/r"])
        .unwrap();
    assert_eq!(
        s.server,
        ServerCommand::Direct(vec![
            "/usr/lib/openssh/sftp-server".into(),
            "-d".into(),
            "/srv/m".into()
        ])
    );
    assert_eq!(s.targetdir, None);
    assert_eq!(s.verbose, 1);
    assert!(!s.autoretry);
    assert_eq!(s.debug_sftp, 2);
    assert_eq!(s.max_open_files, Some(7));
    assert_eq!(s.timeout, Duration::from_secs(30));
    assert!(s.keepdirectories);
    assert!(!s.posix_rename);
    assert_eq!(s.connections, 3);
    assert_eq!(s.window, Some(3 << 20));
    assert!(!s.in_order);
    assert_eq!(s.symlinks, crate::config::Symlinks::Copy);
}

#[test]
fn symlinks_is_auto_by_default_or_yes_or_copy() {
    let symlinks = |line: &str| {
        World::new()
            .file("/r/conf/outsftphook.conf", &format!("servername h\n{line}"))
            .resolve(&["-b", "/r"])
            .map(|s| s.symlinks)
    };
    use crate::config::Symlinks;
    assert_eq!(symlinks("").unwrap(), Symlinks::Auto);
    assert_eq!(symlinks("symlinks auto\n").unwrap(), Symlinks::Auto);
    assert_eq!(symlinks("symlinks yes\n").unwrap(), Symlinks::Yes);
    assert_eq!(symlinks("symlinks copy\n").unwrap(), Symlinks::Copy);
}

#[test]
fn window_is_auto_by_default_or_a_size_with_a_unit() {
    let window = |line: &str| {
        World::new()
            .file("/r/conf/outsftphook.conf", &format!("servername h\n{line}"))
            .resolve(&["-b", "/r"])
            .map(|s| s.window)
    };
    assert_eq!(window("").unwrap(), None);
    assert_eq!(window("window auto\n").unwrap(), None);
    assert_eq!(window("window 512K\n").unwrap(), Some(512 << 10));
    assert_eq!(window("window 65536\n").unwrap(), Some(65536));
    assert_eq!(window("window 1g\n").unwrap(), Some(1 << 30));
    for bad in ["window 4X\n", "window 1K\n", "window M\n", "window -1M\n"] {
        let err = window(bad).unwrap_err().to_string();
        assert!(
            err.contains(":2: 'window' takes 'auto' or a size"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn autoretry_flags_override_the_conf_file() {
    let w = World::new().file("/r/conf/outsftphook.conf", "servername h\nautoretry no\n");
    assert!(w.resolve(&["-b", "/r", "--autoretry"]).unwrap().autoretry);
    let w = World::new().file("/r/conf/outsftphook.conf", "servername h\n");
    assert!(
        !w.resolve(&["-b", "/r", "--no-autoretry"])
            .unwrap()
            .autoretry
    );
}

#[test]
fn sshcommand_and_optional_username() {
    let s = World::new()
        .file(
            "/r/conf/outsftphook.conf",
            "servername h\nsshcommand ssh -F /etc/outsftphook/ssh_config\n",
        )
        .resolve(&["-b", "/r"])
        .unwrap();
    assert_eq!(
        s.server,
        ServerCommand::Ssh {
            ssh: vec![
                "ssh".into(),
                "-F".into(),
                "/etc/outsftphook/ssh_config".into()
            ],
            options: vec![],
            user: None,
            host: "h".into(),
            kept: None,
        }
    );
}

#[test]
fn bwlimit_reads_as_rsync_s_from_the_conf_and_the_flag_wins() {
    let resolve = |text: &str, args: &[&str]| {
        let mut all = vec!["-b", "/r"];
        all.extend(args);
        World::new()
            .file("/r/conf/outsftphook.conf", text)
            .resolve(&all)
    };
    assert_eq!(resolve("servername h\n", &[]).unwrap().bwlimit, None);
    for (value, rate) in [
        ("500", 500 * 1024),
        ("500K", 500 * 1024),
        ("2M", 2 << 20),
        ("2MiB", 2 << 20),
        ("1MB", 1_000_000),
        ("64kb", 64_000),
        ("1000B", 1000),
    ] {
        let s = resolve(&format!("servername h\nbwlimit {value}\n"), &[]).unwrap();
        assert_eq!(s.bwlimit, Some(rate), "{value}");
    }
    assert_eq!(
        resolve("servername h\nbwlimit 0\n", &[]).unwrap().bwlimit,
        None
    );
    let s = resolve("servername h\nbwlimit 1M\n", &["--bwlimit", "300K"]).unwrap();
    assert_eq!(s.bwlimit, Some(300 * 1024));
    let s = resolve("servername h\nbwlimit 1M\n", &["--bwlimit=0"]).unwrap();
    assert_eq!(s.bwlimit, None, "--bwlimit 0 lifts the conf's limit");
    let err = resolve("servername h\nbwlimit fast\n", &[]).unwrap_err();
    assert!(
        err.to_string()
            .contains(":2: 'bwlimit' takes a rate like 500 (KiB/s)"),
        "{err}"
    );
}

#[test]
fn keepdone_is_for_ever_by_default_or_days() {
    let conf = |text: &str| {
        World::new()
            .file("/r/conf/outsftphook.conf", text)
            .resolve(&["-b", "/r"])
    };
    assert_eq!(conf("servername h\n").unwrap().keep_done, None);
    assert_eq!(
        conf("servername h\nkeepdone 30\n").unwrap().keep_done,
        Some(Duration::from_secs(30 * 86400))
    );
    assert_eq!(
        conf("servername h\nkeepdone 0\n").unwrap().keep_done,
        Some(Duration::ZERO)
    );
    let err = conf("servername h\nkeepdone a month\n").unwrap_err();
    assert!(
        err.to_string()
            .contains(":2: 'keepdone' takes a whole number >= 0, not 'a month'"),
        "{err}"
    );
}

#[test]
fn keepdeleted_is_36_hours_by_default_or_a_duration_with_its_unit() {
    let resolve = |text: &str, args: &[&str]| {
        let mut argv = vec!["-b", "/r"];
        argv.extend(args);
        World::new()
            .file("/r/conf/outsftphook.conf", text)
            .resolve(&argv)
    };
    let keep = |text: &str, args: &[&str]| resolve(text, args).unwrap().keep_deleted;
    assert_eq!(keep("servername h\n", &[]), Duration::from_secs(36 * 3600));
    for (value, seconds) in [
        ("0", 0),
        ("90s", 90),
        ("30m", 1800),
        ("36h", 129_600),
        ("2d", 172_800),
    ] {
        let text = format!("servername h\nkeepdeleted {value}\n");
        assert_eq!(keep(&text, &[]), Duration::from_secs(seconds), "{value}");
    }
    // The command line wins.
    assert_eq!(
        keep("servername h\nkeepdeleted 2d\n", &["--keepdeleted", "0"]),
        Duration::ZERO
    );
    for bad in ["36", "1w", "h", "-1h", "1.5h", "36 h"] {
        let text = format!("servername h\nkeepdeleted {bad}\n");
        let err = resolve(&text, &[]).unwrap_err().to_string();
        assert!(
            err.contains(&format!(
                ":2: 'keepdeleted' takes 0, or a whole number with a unit: 90s, 30m, 36h, 2d, \
                 not '{bad}'"
            )),
            "{bad}: {err}"
        );
    }
}

#[test]
fn commands_are_quoted_as_a_shell_would() {
    let s = World::new()
        .file(
            "/r/conf/outsftphook.conf",
            "servername h\nsshcommand ssh -o \"ConnectTimeout 5\" -F '/etc/my ssh' a\\ b\n",
        )
        .resolve(&["-b", "/r"])
        .unwrap();
    let ServerCommand::Ssh { ssh, .. } = s.server else {
        panic!("{:?}", s.server)
    };
    let want: Vec<OsString> = ["ssh", "-o", "ConnectTimeout 5", "-F", "/etc/my ssh", "a b"]
        .map(OsString::from)
        .into();
    assert_eq!(ssh, want);
    let s = World::new()
        .file(
            "/r/conf/outsftphook.conf",
            "sftpcommand /usr/lib/openssh/sftp-server -d \"/srv/my mirror\"\n",
        )
        .resolve(&["-b", "/r"])
        .unwrap();
    assert_eq!(
        s.server,
        ServerCommand::Direct(
            ["/usr/lib/openssh/sftp-server", "-d", "/srv/my mirror"]
                .map(OsString::from)
                .into()
        )
    );
}

#[test]
fn errors_name_file_line_and_key() {
    let cases = [
        (
            "servername h\nfrobnicate 3\n",
            "/r/conf/outsftphook.conf:2: unknown key 'frobnicate'",
        ),
        (
            "servername h\nverbose maybe\n",
            "/r/conf/outsftphook.conf:2: 'verbose' takes yes/no",
        ),
        (
            "maxopenfiles 0\n",
            "/r/conf/outsftphook.conf:1: 'maxopenfiles' takes a whole number >= 1",
        ),
        (
            "servername h\ninorder yes\n",
            "/r/conf/outsftphook.conf:2: 'inorder' takes auto or no, not 'yes'",
        ),
        (
            "servername h\nsymlinks no\n",
            "/r/conf/outsftphook.conf:2: 'symlinks' takes auto, yes or copy, not 'no'",
        ),
        (
            "timeout soon\n",
            "/r/conf/outsftphook.conf:1: 'timeout' takes a whole number",
        ),
        (
            "servername h\nsshcommand ssh -o \"ConnectTimeout 5\n",
            "/r/conf/outsftphook.conf:2: 'sshcommand' has a quote that is not closed: \
             'ssh -o \"ConnectTimeout 5'",
        ),
        (
            "# x\nsftpcommand sftp-server -d 'a\n",
            "/r/conf/outsftphook.conf:2: 'sftpcommand' has a quote that is not closed",
        ),
        (
            "servername h\nusername a b\n",
            "/r/conf/outsftphook.conf:2: 'username' takes one word, without spaces, not 'a b'",
        ),
        (
            "servername h i\n",
            "/r/conf/outsftphook.conf:1: 'servername' takes one word",
        ),
        (
            "servername h\ndebug 7\n",
            "/r/conf/outsftphook.conf:2: 'debug' takes a level from 0 to 2, not '7'",
        ),
        (
            "servername h\ntimeout 5\n\n# again\nservername k\n",
            "/r/conf/outsftphook.conf:5: 'servername' is set again (first on line 1): keep one \
             of the two lines",
        ),
        (
            "servername\n",
            "/r/conf/outsftphook.conf:1: 'servername' needs a value",
        ),
        (
            "username u\n",
            "/r/conf/outsftphook.conf: no server configured",
        ),
        (
            "servername h\ntargetdir a//b\n",
            "/r/conf/outsftphook.conf: targetdir 'a//b'",
        ),
    ];
    for (conf, want) in cases {
        let err = World::new()
            .file("/r/conf/outsftphook.conf", conf)
            .resolve(&["-b", "/r"])
            .unwrap_err();
        assert!(err.to_string().starts_with(want), "{conf:?}: {err}");
    }
}

#[test]
fn a_missing_conf_file_or_repository_says_what_to_do() {
    let err = World::new().resolve(&["-b", "/r"]).unwrap_err();
    assert!(
        err.to_string()
            .contains("/r/conf/outsftphook.conf does not exist"),
        "{err}"
    );
    let err = World::new().resolve(&[]).unwrap_err();
    assert!(err.to_string().contains("use --basedir"), "{err}");
}

#[test]
fn the_example_conf_in_contrib_is_valid() {
    let example = include_str!("../../contrib/outsftphook.conf.example");
    let s = World::new()
        .file("/r/conf/outsftphook.conf", example)
        .resolve(&["-b", "/r"])
        .unwrap();
    assert_eq!(
        s.targetdir,
        Some(RemotePath::new("/srv/mirror/debian").unwrap())
    );
}

#[test]
fn each_problem_has_its_one_line_message() {
    let conf = Path::new("/r/conf/outsftphook.conf");
    let cases = [
        (
            World::new().resolve(&["--confdir", "/c"]).unwrap_err(),
            "cannot tell the out dir: use --outdir or --basedir",
        ),
        (
            World::new()
                .resolve(&["--confdir", "/c", "--outdir", "/o"])
                .unwrap_err(),
            "cannot tell the log dir: use --logdir or --basedir",
        ),
        (
            ConfigError::Unreadable {
                path: conf.into(),
                error: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
            },
            "cannot read /r/conf/outsftphook.conf: permission denied",
        ),
        (
            ConfigError::MissingDir {
                what: "out",
                dir: "/o".into(),
                from: "--outdir".into(),
                exists: false,
            },
            "the out dir /o (from --outdir) does not exist: check that setting (and --basedir); \
             nothing was sent",
        ),
        (
            ConfigError::MissingDir {
                what: "log",
                dir: "/l".into(),
                from: "BASEDIR/logs".into(),
                exists: true,
            },
            "the log dir /l (from BASEDIR/logs) is not a directory: check that setting (and \
             --basedir); nothing was sent",
        ),
        (
            World::new()
                .file("/r/conf/outsftphook.conf", "servername h\nbogus\n")
                .resolve(&["-b", "/r"])
                .unwrap_err(),
            "/r/conf/outsftphook.conf:2: unknown key 'bogus' (known: servername, username, \
             targetdir, debug, verbose, autoretry, sshcommand, sftpcommand, maxopenfiles, \
             timeout, keepdirectories, posixrename, connections, window, inorder, symlinks, \
             keepdone, bwlimit, keepdeleted, tracefile, switch, sshpersist)",
        ),
    ];
    for (err, want) in cases {
        assert_eq!(err.to_string(), want);
    }
}

#[test]
fn a_conf_without_mirror_lines_is_one_mirror_as_before() {
    let all = mirrors(CONF, &[]).unwrap();
    assert_eq!(all.len(), 1);
    let s = &all[0];
    assert_eq!(
        s.mirror,
        MirrorName {
            name: "mirror.example.org".into(),
            journal_tag: None,
        }
    );
    assert_eq!(s.mirrors_configured, 1);
    assert_eq!((s.switch, s.tracefile.as_deref()), (Switch::Together, None));
    let one = World::new()
        .file("/r/conf/outsftphook.conf", CONF)
        .resolve(&["-b", "/r"])
        .unwrap();
    assert_eq!(&one, s, "resolve is the first of resolve_mirrors");
    let s = &mirrors("sftpcommand sftp-server\n", &[]).unwrap()[0];
    assert_eq!(s.mirror.name, "default", "no servername");
}

#[test]
fn sections_inherit_the_base_and_override_it() {
    let conf = "servername a.example.org\nusername repo\ntargetdir /srv/m\nconnections 2\n\
verbose yes\ndebug 1\nautoretry no\nkeepdone 3\nswitch each\ntracefile a.example.org\n\
\n# the offsite copy\nmirror b\nservername b.example.org\nconnections 6\ntargetdir /m/\n\
tracefile b.example.org\nmirror c\nwindow 4M\nusername other\n";
    let all = mirrors(conf, &[]).unwrap();
    assert_eq!(names(&all), ["a.example.org", "b", "c"]);
    let tags: Vec<_> = all
        .iter()
        .map(|s| s.mirror.journal_tag.as_deref())
        .collect();
    assert_eq!(tags, [None, Some("b"), Some("c")]);
    let [a, b, c] = &all[..] else { panic!() };
    assert_eq!(a.server, ssh(Some("repo"), "a.example.org"));
    assert_eq!(
        b.server,
        ssh(Some("repo"), "b.example.org"),
        "username inherited"
    );
    assert_eq!(
        c.server,
        ssh(Some("other"), "a.example.org"),
        "servername inherited"
    );
    assert_eq!(
        [a.connections, b.connections, c.connections],
        [2, 6, 2],
        "the section's wins for its mirror only"
    );
    assert_eq!([a.window, b.window, c.window], [None, None, Some(4 << 20)]);
    let dir = |d: &str| Some(RemotePath::new(d).unwrap());
    assert_eq!(
        [&a.targetdir, &b.targetdir, &c.targetdir],
        [&dir("/srv/m"), &dir("/m"), &dir("/srv/m")]
    );
    let traces: Vec<_> = all.iter().map(|s| s.tracefile.as_deref()).collect();
    assert_eq!(
        traces,
        [
            Some("a.example.org"),
            Some("b.example.org"),
            Some("a.example.org")
        ]
    );
    for s in &all {
        assert_eq!(s.mirrors_configured, 3);
        assert_eq!(s.switch, Switch::Each, "global, in each");
        assert_eq!((s.verbose, s.debug_sftp, s.autoretry), (1, 1, false));
        assert_eq!(s.keep_done, Some(Duration::from_secs(3 * 86400)));
        assert_eq!(s.outdir, Path::new("/r"));
    }
}

#[test]
fn a_section_that_names_its_transport_does_not_inherit_the_other() {
    let sftp =
        |dir: &str| ServerCommand::Direct(["sftp-server", "-d", dir].map(OsString::from).into());
    let conf = "servername a\nsshcommand ssh -F cfg\nmirror local\nsftpcommand sftp-server -d /l\n\
mirror b\nservername b\n";
    let all = mirrors(conf, &[]).unwrap();
    assert_eq!(all[1].server, sftp("/l"), "base servername ignored");
    let ServerCommand::Ssh {
        ssh: command, host, ..
    } = &all[2].server
    else {
        panic!("{:?}", all[2].server)
    };
    assert_eq!(host, "b");
    assert_eq!(command.len(), 3, "sshcommand inherited: {command:?}");
    // The other way round: a base with sftpcommand, a section with servername.
    let conf = "sftpcommand sftp-server -d /l\nmirror far\nservername far.example.org\n\
mirror near\ntargetdir /n\n";
    let all = mirrors(conf, &[]).unwrap();
    assert_eq!(names(&all), ["default", "far", "near"]);
    assert_eq!(all[0].server, sftp("/l"));
    assert_eq!(
        all[1].server,
        ssh(None, "far.example.org"),
        "base sftpcommand not inherited"
    );
    assert_eq!(all[2].server, sftp("/l"), "nothing named: the base's");
}

#[test]
fn only_picks_mirrors_by_name_in_the_conf_files_order() {
    let conf = "servername a\nmirror b\nservername hb\nmirror c\nservername hc\n";
    assert_eq!(
        names(&mirrors(conf, &["--only", "c,a"]).unwrap()),
        ["a", "c"]
    );
    let only_b = mirrors(conf, &["--only=b", "--pending"]).unwrap();
    assert_eq!(names(&only_b), ["b"]);
    assert_eq!(only_b[0].mirrors_configured, 3, "counted before --only");
    let first = World::new()
        .file("/r/conf/outsftphook.conf", conf)
        .resolve(&["-b", "/r", "--only", "c,b"])
        .unwrap();
    assert_eq!(first.mirror.name, "b", "resolve: the first selected");
    let err = mirrors(conf, &["--only", "b,x"]).unwrap_err();
    assert_eq!(
        err,
        "--only x: /r/conf/outsftphook.conf has no mirror of that name (it has: a, b, c; the \
         first is named by its servername, or default): give one of those"
    );
    let err = mirrors("sftpcommand s\n", &["--only", "s"]).unwrap_err();
    assert!(err.contains("(it has: default;"), "{err}");
}

#[test]
fn switch_and_tracefile_take_their_values() {
    let one = |line: &str| mirrors(&format!("servername h\n{line}\n"), &[]).map(|m| m[0].clone());
    assert_eq!(one("switch together").unwrap().switch, Switch::Together);
    assert_eq!(one("switch each").unwrap().switch, Switch::Each);
    assert_eq!(
        one("tracefile mirror.example.org")
            .unwrap()
            .tracefile
            .as_deref(),
        Some("mirror.example.org")
    );
    for (line, want) in [
        (
            "switch both",
            ":2: 'switch' takes together or each, not 'both'",
        ),
        (
            "tracefile ../x",
            ":2: 'tracefile' takes a file name of letters, digits",
        ),
        ("tracefile a/b", "not 'a/b'"),
        ("tracefile a b", "not 'a b'"),
        ("tracefile .hidden", "not '.hidden'"),
    ] {
        let err = one(line).unwrap_err();
        assert!(err.contains(want), "{line}: {err}");
    }
}

#[test]
fn mirror_lines_and_sections_refuse_what_is_wrong() {
    let f = "/r/conf/outsftphook.conf";
    let cases = [
        (
            "servername h\nmirror b\nservername x\ndebug 1\n",
            format!(
                "{f}:4: 'debug' is global, not one mirror's (this line is in the section of \
                 mirror 'b'): move it above the first 'mirror' line"
            ),
        ),
        (
            "servername h\nmirror b\nswitch each\n",
            format!("{f}:3: 'switch' is global"),
        ),
        (
            "servername h\nmirror b\nkeepdone 2\n",
            format!("{f}:3: 'keepdone' is global"),
        ),
        (
            "servername h\nmirror b\nverbose yes\n",
            format!("{f}:3: 'verbose' is global"),
        ),
        (
            "servername h\nmirror b\nautoretry no\n",
            format!("{f}:3: 'autoretry' is global"),
        ),
        (
            "servername h\nmirror\n",
            format!(
                "{f}:2: 'mirror' needs a name: 'mirror NAME' starts the settings of one more \
                 mirror"
            ),
        ),
        (
            "servername h\nmirror b\n\nmirror c\nmirror b\n",
            format!(
                "{f}:5: mirror 'b' is named again (first on line 2): give each mirror its own \
                 name"
            ),
        ),
        (
            "servername h\nmirror h\n",
            format!(
                "{f}:2: mirror 'h' has the first mirror's name (its servername): give this one \
                 another name"
            ),
        ),
        (
            "sftpcommand s\nmirror default\n",
            format!(
                "{f}:2: mirror 'default' has the first mirror's name (no servername is set \
                 before the first 'mirror' line): give this one another name"
            ),
        ),
        (
            "servername h\nmirror b\nconnections 2\nconnections 3\n",
            format!("{f}:4: 'connections' is set again (first on line 3)"),
        ),
        (
            "servername h\nmirror b\ntargetdir a//b\n",
            format!("{f}:3: targetdir 'a//b': "),
        ),
        (
            "servername h\nmirror b\nfrobnicate 1\n",
            format!("{f}:3: unknown key 'frobnicate'"),
        ),
        (
            "mirror b\nservername h\n",
            format!("{f}: no server configured"),
        ),
    ];
    for (conf, want) in cases {
        let err = mirrors(conf, &[]).unwrap_err();
        assert!(err.starts_with(&want), "{conf:?}: {err}");
    }
    let long = "x".repeat(65);
    for bad in ["-b", ".b", "a b", "a/b", "é", long.as_str()] {
        let err = mirrors(&format!("servername h\nmirror {bad}\n"), &[]).unwrap_err();
        assert_eq!(
            err,
            format!(
                "{f}:2: 'mirror' takes a name of letters, digits, '.', '_' and '-' (a letter \
                 or digit first, at most 64), not '{bad}'"
            )
        );
    }
    let ok = mirrors(
        &format!("servername h\nmirror {}\nmirror B_2.x-y\n", &long[1..]),
        &[],
    );
    assert_eq!(ok.unwrap().len(), 3);
    // The same key in the base and in a section is not set twice.
    assert!(
        mirrors(
            "servername h\nconnections 2\nmirror b\nconnections 3\n",
            &[]
        )
        .is_ok()
    );
}

#[test]
fn sshpersist_keeps_the_connection_a_minute_unless_told() {
    let persist =
        |lines: &str| mirrors(&format!("servername h\n{lines}"), &[]).map(|m| m[0].ssh_persist);
    assert_eq!(persist(""), Ok(Some(DEFAULT_SSH_PERSIST)));
    assert_eq!(persist("sshpersist yes\n"), Ok(Some(DEFAULT_SSH_PERSIST)));
    assert_eq!(persist("sshpersist no\n"), Ok(None));
    assert_eq!(persist("sshpersist 0\n"), Ok(None));
    assert_eq!(
        persist("sshpersist 90\n"),
        Ok(Some(Duration::from_secs(90)))
    );
    assert_eq!(
        persist("sshpersist 10m\n"),
        Ok(Some(Duration::from_secs(600)))
    );
    let per_mirror = mirrors(
        "servername a\nmirror b\nservername hb\nsshpersist no\n",
        &[],
    );
    let kept: Vec<_> = per_mirror.unwrap().iter().map(|m| m.ssh_persist).collect();
    assert_eq!(kept, [Some(DEFAULT_SSH_PERSIST), None]);
    for bad in ["sshpersist soon", "sshpersist 2d", "sshpersist -5"] {
        let err = persist(&format!("{bad}\n")).unwrap_err();
        assert!(
            err.contains(":2: 'sshpersist' takes no, or how long the connection stays"),
            "{bad}: {err}"
        );
    }
}
