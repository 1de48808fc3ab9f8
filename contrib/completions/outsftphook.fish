# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_outsftphook_global_optspecs
    string join \n v/verbose q/quiet n/dry-run pending autoretry no-autoretry ignore-pending force-order b/basedir= outdir= logdir= confdir= debug-sftp= timeline bwlimit= keepdeleted= only= lock-timeout= h/help V/version
end

function __fish_outsftphook_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_outsftphook_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_outsftphook_using_subcommand
    set -l cmd (__fish_outsftphook_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c outsftphook -n "__fish_outsftphook_needs_command" -s b -l basedir -d 'The repository\'s base directory; the defaults of the others derive from it' -r -F
complete -c outsftphook -n "__fish_outsftphook_needs_command" -l outdir -d 'Where pool/ is (reprepro\'s outdir) [default: BASEDIR]' -r -F
complete -c outsftphook -n "__fish_outsftphook_needs_command" -l logdir -d 'Where the .outlog files are [default: BASEDIR/logs]' -r -F
complete -c outsftphook -n "__fish_outsftphook_needs_command" -l confdir -d 'Where options and outsftphook.conf are [default: BASEDIR/conf]' -r -F
complete -c outsftphook -n "__fish_outsftphook_needs_command" -l debug-sftp -d 'Log SFTP traffic on stderr: 1 each request and reply (with the server\'s extensions and limits), 2 everything outsftphook can tell' -r
complete -c outsftphook -n "__fish_outsftphook_needs_command" -l bwlimit -d 'Write at most RATE to the servers, over all connections: KiB/s, or with a suffix (500K, 2M: powers of 1024; 1MB: of 1000); 0 for no limit [conf: bwlimit]' -r
complete -c outsftphook -n "__fish_outsftphook_needs_command" -l keepdeleted -d 'How long a file the repository no longer references stays on the mirror before it is deleted, for apt clients that read the old indexes: 90s, 30m, 36h, 2d; 0 deletes at once [default: 36h; conf: keepdeleted]' -r
complete -c outsftphook -n "__fish_outsftphook_needs_command" -l only -d 'Work on these mirrors only, by the names outsftphook.conf gives them: NAME of a `mirror NAME` line, and for the first mirror (the keys before any `mirror` line) its servername, or `default` without one [default: every mirror]' -r
complete -c outsftphook -n "__fish_outsftphook_needs_command" -l lock-timeout -d 'How long to wait for another outsftphook working on the same log dir' -r
complete -c outsftphook -n "__fish_outsftphook_needs_command" -s v -l verbose -d 'Tell what is done; twice for every request'
complete -c outsftphook -n "__fish_outsftphook_needs_command" -s q -l quiet -d 'Say nothing on success, for scripts: no progress line, no summary (errors are still said on stderr)'
complete -c outsftphook -n "__fish_outsftphook_needs_command" -s n -l dry-run -d 'Print what would be done, in order, and change nothing'
complete -c outsftphook -n "__fish_outsftphook_needs_command" -l pending -d 'Process every unprocessed .outlog in the log dir instead of FILEs'
complete -c outsftphook -n "__fish_outsftphook_needs_command" -l autoretry -d 'Process unprocessed older .outlogs first (the default; see --no-autoretry)'
complete -c outsftphook -n "__fish_outsftphook_needs_command" -l no-autoretry -d 'Refuse to run while older .outlogs are unprocessed, as the reference hook does'
complete -c outsftphook -n "__fish_outsftphook_needs_command" -l ignore-pending -d 'Do not look for unprocessed older .outlogs at all'
complete -c outsftphook -n "__fish_outsftphook_needs_command" -l force-order -d 'Process FILEs in the order given even if their names are not in order'
complete -c outsftphook -n "__fish_outsftphook_needs_command" -l timeline -d 'Print on stderr, for each phase of a hook push (prepare, connect, uploads, switch, after, close, journal), when it started and ended, the round trips it waited for and the bytes it moved'
complete -c outsftphook -n "__fish_outsftphook_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c outsftphook -n "__fish_outsftphook_needs_command" -s V -l version -d 'Print version'
complete -c outsftphook -n "__fish_outsftphook_needs_command" -a "mirror" -d 'Make the remote equal to the local repository, without any outlog: upload what is missing or different (by type, size and modification time; with --checksum, by content too), fix symlinks, in the hook\'s safe order. Run it to seed a new mirror or to repair one; run it again after an interruption'
complete -c outsftphook -n "__fish_outsftphook_needs_command" -a "verify" -d 'Compare the remote with the local repository and change nothing; prints each difference, exits 1 if there is any'
complete -c outsftphook -n "__fish_outsftphook_needs_command" -a "status" -d 'Show the pending outlogs and what is left of each'
complete -c outsftphook -n "__fish_outsftphook_needs_command" -a "completions" -d 'Print a shell completion script (bash, zsh, fish, elvish or powershell)'
complete -c outsftphook -n "__fish_outsftphook_needs_command" -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c outsftphook -n "__fish_outsftphook_using_subcommand mirror" -l max-delete -d 'With --delete: refuse (exit 2, nothing changed) when more than N remote files, links and directories would be removed' -r
complete -c outsftphook -n "__fish_outsftphook_using_subcommand mirror" -s b -l basedir -d 'The repository\'s base directory; the defaults of the others derive from it' -r -F
complete -c outsftphook -n "__fish_outsftphook_using_subcommand mirror" -l outdir -d 'Where pool/ is (reprepro\'s outdir) [default: BASEDIR]' -r -F
complete -c outsftphook -n "__fish_outsftphook_using_subcommand mirror" -l logdir -d 'Where the .outlog files are [default: BASEDIR/logs]' -r -F
complete -c outsftphook -n "__fish_outsftphook_using_subcommand mirror" -l confdir -d 'Where options and outsftphook.conf are [default: BASEDIR/conf]' -r -F
complete -c outsftphook -n "__fish_outsftphook_using_subcommand mirror" -l debug-sftp -d 'Log SFTP traffic on stderr: 1 each request and reply (with the server\'s extensions and limits), 2 everything outsftphook can tell' -r
complete -c outsftphook -n "__fish_outsftphook_using_subcommand mirror" -l bwlimit -d 'Write at most RATE to the servers, over all connections: KiB/s, or with a suffix (500K, 2M: powers of 1024; 1MB: of 1000); 0 for no limit [conf: bwlimit]' -r
complete -c outsftphook -n "__fish_outsftphook_using_subcommand mirror" -l keepdeleted -d 'How long a file the repository no longer references stays on the mirror before it is deleted, for apt clients that read the old indexes: 90s, 30m, 36h, 2d; 0 deletes at once [default: 36h; conf: keepdeleted]' -r
complete -c outsftphook -n "__fish_outsftphook_using_subcommand mirror" -l only -d 'Work on these mirrors only, by the names outsftphook.conf gives them: NAME of a `mirror NAME` line, and for the first mirror (the keys before any `mirror` line) its servername, or `default` without one [default: every mirror]' -r
complete -c outsftphook -n "__fish_outsftphook_using_subcommand mirror" -l lock-timeout -d 'How long to wait for another outsftphook working on the same log dir' -r
complete -c outsftphook -n "__fish_outsftphook_using_subcommand mirror" -l delete -d 'Also remove remote files and directories that are not local (after the distributions are in place). Refused when a top directory is missing or empty locally'
complete -c outsftphook -n "__fish_outsftphook_using_subcommand mirror" -l checksum -d 'Also compare the content of files whose size and time match (reads them remotely), and upload again those that differ'
complete -c outsftphook -n "__fish_outsftphook_using_subcommand mirror" -s v -l verbose -d 'Tell what is done; twice for every request'
complete -c outsftphook -n "__fish_outsftphook_using_subcommand mirror" -s q -l quiet -d 'Say nothing on success, for scripts: no progress line, no summary (errors are still said on stderr)'
complete -c outsftphook -n "__fish_outsftphook_using_subcommand mirror" -s n -l dry-run -d 'Print what would be done, in order, and change nothing'
complete -c outsftphook -n "__fish_outsftphook_using_subcommand mirror" -l timeline -d 'Print on stderr, for each phase of a hook push (prepare, connect, uploads, switch, after, close, journal), when it started and ended, the round trips it waited for and the bytes it moved'
complete -c outsftphook -n "__fish_outsftphook_using_subcommand mirror" -s h -l help -d 'Print help'
complete -c outsftphook -n "__fish_outsftphook_using_subcommand verify" -s b -l basedir -d 'The repository\'s base directory; the defaults of the others derive from it' -r -F
complete -c outsftphook -n "__fish_outsftphook_using_subcommand verify" -l outdir -d 'Where pool/ is (reprepro\'s outdir) [default: BASEDIR]' -r -F
complete -c outsftphook -n "__fish_outsftphook_using_subcommand verify" -l logdir -d 'Where the .outlog files are [default: BASEDIR/logs]' -r -F
complete -c outsftphook -n "__fish_outsftphook_using_subcommand verify" -l confdir -d 'Where options and outsftphook.conf are [default: BASEDIR/conf]' -r -F
complete -c outsftphook -n "__fish_outsftphook_using_subcommand verify" -l debug-sftp -d 'Log SFTP traffic on stderr: 1 each request and reply (with the server\'s extensions and limits), 2 everything outsftphook can tell' -r
complete -c outsftphook -n "__fish_outsftphook_using_subcommand verify" -l bwlimit -d 'Write at most RATE to the servers, over all connections: KiB/s, or with a suffix (500K, 2M: powers of 1024; 1MB: of 1000); 0 for no limit [conf: bwlimit]' -r
complete -c outsftphook -n "__fish_outsftphook_using_subcommand verify" -l keepdeleted -d 'How long a file the repository no longer references stays on the mirror before it is deleted, for apt clients that read the old indexes: 90s, 30m, 36h, 2d; 0 deletes at once [default: 36h; conf: keepdeleted]' -r
complete -c outsftphook -n "__fish_outsftphook_using_subcommand verify" -l only -d 'Work on these mirrors only, by the names outsftphook.conf gives them: NAME of a `mirror NAME` line, and for the first mirror (the keys before any `mirror` line) its servername, or `default` without one [default: every mirror]' -r
complete -c outsftphook -n "__fish_outsftphook_using_subcommand verify" -l lock-timeout -d 'How long to wait for another outsftphook working on the same log dir' -r
complete -c outsftphook -n "__fish_outsftphook_using_subcommand verify" -l checksum -d 'Also compare the content of files whose size matches (reads them remotely)'
complete -c outsftphook -n "__fish_outsftphook_using_subcommand verify" -s v -l verbose -d 'Tell what is done; twice for every request'
complete -c outsftphook -n "__fish_outsftphook_using_subcommand verify" -s q -l quiet -d 'Say nothing on success, for scripts: no progress line, no summary (errors are still said on stderr)'
complete -c outsftphook -n "__fish_outsftphook_using_subcommand verify" -s n -l dry-run -d 'Print what would be done, in order, and change nothing'
complete -c outsftphook -n "__fish_outsftphook_using_subcommand verify" -l timeline -d 'Print on stderr, for each phase of a hook push (prepare, connect, uploads, switch, after, close, journal), when it started and ended, the round trips it waited for and the bytes it moved'
complete -c outsftphook -n "__fish_outsftphook_using_subcommand verify" -s h -l help -d 'Print help'
complete -c outsftphook -n "__fish_outsftphook_using_subcommand status" -s b -l basedir -d 'The repository\'s base directory; the defaults of the others derive from it' -r -F
complete -c outsftphook -n "__fish_outsftphook_using_subcommand status" -l outdir -d 'Where pool/ is (reprepro\'s outdir) [default: BASEDIR]' -r -F
complete -c outsftphook -n "__fish_outsftphook_using_subcommand status" -l logdir -d 'Where the .outlog files are [default: BASEDIR/logs]' -r -F
complete -c outsftphook -n "__fish_outsftphook_using_subcommand status" -l confdir -d 'Where options and outsftphook.conf are [default: BASEDIR/conf]' -r -F
complete -c outsftphook -n "__fish_outsftphook_using_subcommand status" -l debug-sftp -d 'Log SFTP traffic on stderr: 1 each request and reply (with the server\'s extensions and limits), 2 everything outsftphook can tell' -r
complete -c outsftphook -n "__fish_outsftphook_using_subcommand status" -l bwlimit -d 'Write at most RATE to the servers, over all connections: KiB/s, or with a suffix (500K, 2M: powers of 1024; 1MB: of 1000); 0 for no limit [conf: bwlimit]' -r
complete -c outsftphook -n "__fish_outsftphook_using_subcommand status" -l keepdeleted -d 'How long a file the repository no longer references stays on the mirror before it is deleted, for apt clients that read the old indexes: 90s, 30m, 36h, 2d; 0 deletes at once [default: 36h; conf: keepdeleted]' -r
complete -c outsftphook -n "__fish_outsftphook_using_subcommand status" -l only -d 'Work on these mirrors only, by the names outsftphook.conf gives them: NAME of a `mirror NAME` line, and for the first mirror (the keys before any `mirror` line) its servername, or `default` without one [default: every mirror]' -r
complete -c outsftphook -n "__fish_outsftphook_using_subcommand status" -l lock-timeout -d 'How long to wait for another outsftphook working on the same log dir' -r
complete -c outsftphook -n "__fish_outsftphook_using_subcommand status" -s v -l verbose -d 'Tell what is done; twice for every request'
complete -c outsftphook -n "__fish_outsftphook_using_subcommand status" -s q -l quiet -d 'Say nothing on success, for scripts: no progress line, no summary (errors are still said on stderr)'
complete -c outsftphook -n "__fish_outsftphook_using_subcommand status" -s n -l dry-run -d 'Print what would be done, in order, and change nothing'
complete -c outsftphook -n "__fish_outsftphook_using_subcommand status" -l timeline -d 'Print on stderr, for each phase of a hook push (prepare, connect, uploads, switch, after, close, journal), when it started and ended, the round trips it waited for and the bytes it moved'
complete -c outsftphook -n "__fish_outsftphook_using_subcommand status" -s h -l help -d 'Print help'
complete -c outsftphook -n "__fish_outsftphook_using_subcommand completions" -s b -l basedir -d 'The repository\'s base directory; the defaults of the others derive from it' -r -F
complete -c outsftphook -n "__fish_outsftphook_using_subcommand completions" -l outdir -d 'Where pool/ is (reprepro\'s outdir) [default: BASEDIR]' -r -F
complete -c outsftphook -n "__fish_outsftphook_using_subcommand completions" -l logdir -d 'Where the .outlog files are [default: BASEDIR/logs]' -r -F
complete -c outsftphook -n "__fish_outsftphook_using_subcommand completions" -l confdir -d 'Where options and outsftphook.conf are [default: BASEDIR/conf]' -r -F
complete -c outsftphook -n "__fish_outsftphook_using_subcommand completions" -l debug-sftp -d 'Log SFTP traffic on stderr: 1 each request and reply (with the server\'s extensions and limits), 2 everything outsftphook can tell' -r
complete -c outsftphook -n "__fish_outsftphook_using_subcommand completions" -l bwlimit -d 'Write at most RATE to the servers, over all connections: KiB/s, or with a suffix (500K, 2M: powers of 1024; 1MB: of 1000); 0 for no limit [conf: bwlimit]' -r
complete -c outsftphook -n "__fish_outsftphook_using_subcommand completions" -l keepdeleted -d 'How long a file the repository no longer references stays on the mirror before it is deleted, for apt clients that read the old indexes: 90s, 30m, 36h, 2d; 0 deletes at once [default: 36h; conf: keepdeleted]' -r
complete -c outsftphook -n "__fish_outsftphook_using_subcommand completions" -l only -d 'Work on these mirrors only, by the names outsftphook.conf gives them: NAME of a `mirror NAME` line, and for the first mirror (the keys before any `mirror` line) its servername, or `default` without one [default: every mirror]' -r
complete -c outsftphook -n "__fish_outsftphook_using_subcommand completions" -l lock-timeout -d 'How long to wait for another outsftphook working on the same log dir' -r
complete -c outsftphook -n "__fish_outsftphook_using_subcommand completions" -s v -l verbose -d 'Tell what is done; twice for every request'
complete -c outsftphook -n "__fish_outsftphook_using_subcommand completions" -s q -l quiet -d 'Say nothing on success, for scripts: no progress line, no summary (errors are still said on stderr)'
complete -c outsftphook -n "__fish_outsftphook_using_subcommand completions" -s n -l dry-run -d 'Print what would be done, in order, and change nothing'
complete -c outsftphook -n "__fish_outsftphook_using_subcommand completions" -l timeline -d 'Print on stderr, for each phase of a hook push (prepare, connect, uploads, switch, after, close, journal), when it started and ended, the round trips it waited for and the bytes it moved'
complete -c outsftphook -n "__fish_outsftphook_using_subcommand completions" -s h -l help -d 'Print help'
complete -c outsftphook -n "__fish_outsftphook_using_subcommand help; and not __fish_seen_subcommand_from mirror verify status completions help" -f -a "mirror" -d 'Make the remote equal to the local repository, without any outlog: upload what is missing or different (by type, size and modification time; with --checksum, by content too), fix symlinks, in the hook\'s safe order. Run it to seed a new mirror or to repair one; run it again after an interruption'
complete -c outsftphook -n "__fish_outsftphook_using_subcommand help; and not __fish_seen_subcommand_from mirror verify status completions help" -f -a "verify" -d 'Compare the remote with the local repository and change nothing; prints each difference, exits 1 if there is any'
complete -c outsftphook -n "__fish_outsftphook_using_subcommand help; and not __fish_seen_subcommand_from mirror verify status completions help" -f -a "status" -d 'Show the pending outlogs and what is left of each'
complete -c outsftphook -n "__fish_outsftphook_using_subcommand help; and not __fish_seen_subcommand_from mirror verify status completions help" -f -a "completions" -d 'Print a shell completion script (bash, zsh, fish, elvish or powershell)'
complete -c outsftphook -n "__fish_outsftphook_using_subcommand help; and not __fish_seen_subcommand_from mirror verify status completions help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
