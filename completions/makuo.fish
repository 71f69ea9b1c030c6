# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_makuo_global_optspecs
    string join \n h/help V/version
end

function __fish_makuo_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_makuo_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_makuo_using_subcommand
    set -l cmd (__fish_makuo_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c makuo -n "__fish_makuo_needs_command" -s h -l help -d 'Print help'
complete -c makuo -n "__fish_makuo_needs_command" -s V -l version -d 'Print version'
complete -c makuo -n "__fish_makuo_needs_command" -f -a "daemon" -d 'Run the daemon: receive pushes into the base dir, send what the console asks for'
complete -c makuo -n "__fish_makuo_needs_command" -f -a "sync" -d 'Push paths to every member (rsync-style): send what differs, optionally delete'
complete -c makuo -n "__fish_makuo_needs_command" -f -a "check" -d 'Compare paths on every member with the sender and list what differs; change nothing'
complete -c makuo -n "__fish_makuo_needs_command" -f -a "rollback" -d 'Switch release link NAME back to its previous release on every member, or on none'
complete -c makuo -n "__fish_makuo_needs_command" -f -a "watch" -d 'Watch paths and push what changes, as it happens (lsyncd\'s job)'
complete -c makuo -n "__fish_makuo_needs_command" -f -a "members" -d 'List live members: name, address, version and role'
complete -c makuo -n "__fish_makuo_needs_command" -f -a "doctor" -d 'How each member is reached: multicast to it and from it, or unicast only'
complete -c makuo -n "__fish_makuo_needs_command" -f -a "status" -d 'Show daemon state: transfers in flight, members, counters'
complete -c makuo -n "__fish_makuo_needs_command" -f -a "exclude" -d 'Edit the daemon\'s standing exclude list (shell globs), which applies to every push'
complete -c makuo -n "__fish_makuo_needs_command" -f -a "loglevel" -d 'Set the daemon\'s log level, from 0 (quiet) to 9 (debug)'
complete -c makuo -n "__fish_makuo_needs_command" -f -a "keygen" -d 'Write a new random cluster key to FILE (\'-\' prints it to stdout)'
complete -c makuo -n "__fish_makuo_needs_command" -f -a "demo" -d 'Run a throwaway cluster on loopback and push a generated tree through it'
complete -c makuo -n "__fish_makuo_needs_command" -f -a "help" -d 'Print the help of makuo or of CMD'
complete -c makuo -n "__fish_makuo_using_subcommand daemon" -s b -l base -d 'Base directory: the tree that is pushed and received' -r -f -a "(__fish_complete_directories)"
complete -c makuo -n "__fish_makuo_using_subcommand daemon" -s m -l group -d 'Multicast group address, IPv4 or IPv6 (ff02::…, ff05::…, ff15::…)' -r -f
complete -c makuo -n "__fish_makuo_using_subcommand daemon" -s p -l port -d 'UDP port of the multicast group' -r
complete -c makuo -n "__fish_makuo_using_subcommand daemon" -s i -l interface -d 'Local interface to send and join multicast on: its name (eth1) or one of its addresses' -r -f
complete -c makuo -n "__fish_makuo_using_subcommand daemon" -l ttl -d 'Multicast hop limit (IPv4 TTL, IPv6 hops); above 1 routed multicast crosses subnets' -r
complete -c makuo -n "__fish_makuo_using_subcommand daemon" -l peer -d 'Member reached by unicast, ADDR[:PORT] (repeatable; PORT defaults to -p)' -r
complete -c makuo -n "__fish_makuo_using_subcommand daemon" -s k -l key -d 'Cluster key file (repeatable, at most 2): the first seals, both open' -r -F
complete -c makuo -n "__fish_makuo_using_subcommand daemon" -l name -d 'Member name announced to the cluster. Default: the hostname' -r
complete -c makuo -n "__fish_makuo_using_subcommand daemon" -l state-dir -d 'Directory for persistent state (member identity, interrupted transfers)' -r -f -a "(__fish_complete_directories)"
complete -c makuo -n "__fish_makuo_using_subcommand daemon" -l mtu -d 'Path MTU in bytes; datagrams are sized to fit it' -r
complete -c makuo -n "__fish_makuo_using_subcommand daemon" -l bind -d 'Address to bind the UDP group socket to. Default: the group address' -r
complete -c makuo -n "__fish_makuo_using_subcommand daemon" -l reply-port -d 'Fixed UDP port for unicast replies (for firewalls). Default: an ephemeral port' -r
complete -c makuo -n "__fish_makuo_using_subcommand daemon" -l config -d 'Read settings from FILE (TOML). Default: /etc/makuo/makuo.conf when it exists' -r -F
complete -c makuo -n "__fish_makuo_using_subcommand daemon" -s P -l console-port -d 'TCP port of the console. Default: the same as -p, as in makuosan' -r
complete -c makuo -n "__fish_makuo_using_subcommand daemon" -s l -l console-addr -d 'Address to bind the TCP console to (makuosan\'s -l)' -r
complete -c makuo -n "__fish_makuo_using_subcommand daemon" -s U -l console-socket -d 'Also serve the console on this unix socket (created only when given)' -r -F
complete -c makuo -n "__fish_makuo_using_subcommand daemon" -s K -l password-file -d 'File holding the console password; clients must send it before any command' -r -F
complete -c makuo -n "__fish_makuo_using_subcommand daemon" -l console-group -d 'Also let members of GROUP use the console (name or gid)' -r
complete -c makuo -n "__fish_makuo_using_subcommand daemon" -s d -l loglevel -d 'Log level, 0 (quiet) to 9 (debug); SIGUSR1 raises it, SIGUSR2 lowers it' -r
complete -c makuo -n "__fish_makuo_using_subcommand daemon" -l log-file -d 'Log file of a detached daemon. Default: STATE_DIR/makuo.log' -r -F
complete -c makuo -n "__fish_makuo_using_subcommand daemon" -l pid-file -d 'Write the daemon\'s process id to FILE once it has detached; removed when it stops' -r -F
complete -c makuo -n "__fish_makuo_using_subcommand daemon" -l syslog-socket -d 'The syslog socket --syslog writes to' -r -F
complete -c makuo -n "__fish_makuo_using_subcommand daemon" -l metrics -d 'Serve Prometheus metrics on http://ADDR/metrics (ADDR is IP:PORT). Default: off' -r
complete -c makuo -n "__fish_makuo_using_subcommand daemon" -s u -l user -d 'Run as this user (name or uid) once the sockets are open' -r
complete -c makuo -n "__fish_makuo_using_subcommand daemon" -s g -l run-group -l group-id -d 'Run as this group (name or gid) once the sockets are open' -r
complete -c makuo -n "__fish_makuo_using_subcommand daemon" -s G -l groups -d 'Supplementary groups (names or gids, comma-separated) once the sockets are open' -r
complete -c makuo -n "__fish_makuo_using_subcommand daemon" -l chroot-dir -d 'Chroot into DIR instead (it must contain the base directory)' -r -f -a "(__fish_complete_directories)"
complete -c makuo -n "__fish_makuo_using_subcommand daemon" -s f -l parallel -d 'Send at most N pushes at once; more wait their turn (makuosan\'s -f)' -r
complete -c makuo -n "__fish_makuo_using_subcommand daemon" -s T -l rate -d 'Cap the send rate, in Mbit/s. Default: no cap' -r
complete -c makuo -n "__fish_makuo_using_subcommand daemon" -l min-rate -d 'Lowest rate a member must take to stay in a push\'s pace (rsync units, as --bwlimit)' -r
complete -c makuo -n "__fish_makuo_using_subcommand daemon" -s R -l rcvbuf -d 'UDP receive buffer size (SO_RCVBUF). Default: 32 MiB' -r
complete -c makuo -n "__fish_makuo_using_subcommand daemon" -s S -l sndbuf -d 'UDP send buffer size (SO_SNDBUF). Default: 8 MiB' -r
complete -c makuo -n "__fish_makuo_using_subcommand daemon" -l heartbeat -d 'Heartbeat interval in milliseconds [default: 1000]' -r
complete -c makuo -n "__fish_makuo_using_subcommand daemon" -l member-timeout -d 'Silence after which a push target has failed, in milliseconds [default: 5000]' -r
complete -c makuo -n "__fish_makuo_using_subcommand daemon" -l member-expiry -d 'Silence after which a member is dropped from the member table, in milliseconds' -r
complete -c makuo -n "__fish_makuo_using_subcommand daemon" -l protect -d 'Never let a push write or delete paths matching PATTERN here (repeatable)' -r
complete -c makuo -n "__fish_makuo_using_subcommand daemon" -l max-delete -d 'Refuse a push that would delete more than N paths here (exit 25 at the sender)' -r
complete -c makuo -n "__fish_makuo_using_subcommand daemon" -l after-push -d 'Run CMD (with /bin/sh -c) on this member after each push it commits' -r
complete -c makuo -n "__fish_makuo_using_subcommand daemon" -l before-commit -d 'Run CMD on this member once a push is staged, before its commit; non-zero vetoes it' -r
complete -c makuo -n "__fish_makuo_using_subcommand daemon" -l hook-timeout -d 'Longest a hook may run, in seconds; it is then killed and fails' -r
complete -c makuo -n "__fish_makuo_using_subcommand daemon" -l relay -d 'Relay pushes: forward other members\' pushes when asked, and push through relays'
complete -c makuo -n "__fish_makuo_using_subcommand daemon" -l insecure -d 'Run without a cluster key: unauthenticated, anyone on the LAN can push or delete files'
complete -c makuo -n "__fish_makuo_using_subcommand daemon" -l print-config -d 'Print the effective settings and where each came from, then exit'
complete -c makuo -n "__fish_makuo_using_subcommand daemon" -s o -l no-console -d 'No console at all: neither TCP nor the unix socket (makuosan\'s -o)'
complete -c makuo -n "__fish_makuo_using_subcommand daemon" -s n -l foreground -d 'Stay in the foreground and log to stderr'
complete -c makuo -n "__fish_makuo_using_subcommand daemon" -l syslog -d 'Log to syslog (facility daemon) instead of stderr or the log file'
complete -c makuo -n "__fish_makuo_using_subcommand daemon" -s c -l chroot -d 'Chroot into the base directory once the base, state directory, sockets and log are open'
complete -c makuo -n "__fish_makuo_using_subcommand daemon" -s r -l no-receive -d 'Never receive: do not write what other members push'
complete -c makuo -n "__fish_makuo_using_subcommand daemon" -s s -l no-send -d 'Never send: refuse pushes submitted through the console'
complete -c makuo -n "__fish_makuo_using_subcommand daemon" -l no-fsync -d 'Skip the durability step (fsync before rename) when receiving'
complete -c makuo -n "__fish_makuo_using_subcommand daemon" -l allow-devices -d 'Create the block and character device nodes pushes carry (needs root)'
complete -c makuo -n "__fish_makuo_using_subcommand daemon" -s O -l owner-match -d 'Owner-match mode: send only files owned by the daemon\'s user (makuosan\'s -O)'
complete -c makuo -n "__fish_makuo_using_subcommand daemon" -l preserve-owner -d 'Keep the owner, group and set-id bits pushed by the sender (needs root)'
complete -c makuo -n "__fish_makuo_using_subcommand daemon" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c makuo -n "__fish_makuo_using_subcommand sync" -s t -l target -d 'Only this member (name or address; repeatable). Default: every live member' -r -f -a "(__fish_print_hostnames)"
complete -c makuo -n "__fish_makuo_using_subcommand sync" -l exclude -d 'Exclude paths matching PATTERN (rsync rules; repeatable)' -r
complete -c makuo -n "__fish_makuo_using_subcommand sync" -l include -d 'Do not exclude paths matching PATTERN (repeatable; see --exclude for the order)' -r
complete -c makuo -n "__fish_makuo_using_subcommand sync" -l exclude-from -d 'Read exclude patterns from FILE, one a line (repeatable; see --exclude for the order)' -r -F
complete -c makuo -n "__fish_makuo_using_subcommand sync" -l include-from -d 'Read include patterns from FILE, one a line (repeatable; as --exclude-from)' -r -F
complete -c makuo -n "__fish_makuo_using_subcommand sync" -s f -l filter -d 'Add an rsync filter RULE (\'- *.o\', \'P /keep\', \'merge FILE\', \'dir-merge NAME\', \'clear\')' -r
complete -c makuo -n "__fish_makuo_using_subcommand sync" -l files-from -d 'Push exactly the paths listed in FILE (\'-\': standard input), with their parents' -r -F
complete -c makuo -n "__fish_makuo_using_subcommand sync" -l max-delete -d 'Delete at most N paths per member; stop deleting (exit 25) beyond that' -r
complete -c makuo -n "__fish_makuo_using_subcommand sync" -l release -d 'Push into a new release and switch the link NAME to it on every member (implies --atomic)' -r
complete -c makuo -n "__fish_makuo_using_subcommand sync" -l keep-releases -d 'With --release: keep the newest N releases on each member (default 5)' -r
complete -c makuo -n "__fish_makuo_using_subcommand sync" -l bwlimit -d 'Cap the send rate; RATE is KiB/s unless suffixed (1.5M, 10MB: rsync units)' -r
complete -c makuo -n "__fish_makuo_using_subcommand sync" -l min-rate -d 'Lowest rate a member must take to stay in the push\'s pace (units as --bwlimit)' -r
complete -c makuo -n "__fish_makuo_using_subcommand sync" -l timeout -d 'Give up when nothing progresses for SECONDS (exit 30); 0 means never (the default)' -r
complete -c makuo -n "__fish_makuo_using_subcommand sync" -l console -d 'Daemon console: HOST:PORT, or a unix socket path (anything containing \'/\')' -r
complete -c makuo -n "__fish_makuo_using_subcommand sync" -s K -l password-file -d 'File holding the console password (the daemon\'s -K)' -r -F
complete -c makuo -n "__fish_makuo_using_subcommand sync" -l discover -d 'In direct mode, the longest to listen for members before starting, in milliseconds' -r
complete -c makuo -n "__fish_makuo_using_subcommand sync" -s b -l base -d 'Base directory: the tree that is pushed and received' -r -f -a "(__fish_complete_directories)"
complete -c makuo -n "__fish_makuo_using_subcommand sync" -s m -l group -d 'Multicast group address, IPv4 or IPv6 (ff02::…, ff05::…, ff15::…)' -r -f
complete -c makuo -n "__fish_makuo_using_subcommand sync" -s p -l port -d 'UDP port of the multicast group' -r
complete -c makuo -n "__fish_makuo_using_subcommand sync" -l ttl -d 'Multicast hop limit (IPv4 TTL, IPv6 hops); above 1 routed multicast crosses subnets' -r
complete -c makuo -n "__fish_makuo_using_subcommand sync" -l peer -d 'Member reached by unicast, ADDR[:PORT] (repeatable; PORT defaults to -p)' -r
complete -c makuo -n "__fish_makuo_using_subcommand sync" -s k -l key -d 'Cluster key file (repeatable, at most 2): the first seals, both open' -r -F
complete -c makuo -n "__fish_makuo_using_subcommand sync" -l name -d 'Member name announced to the cluster. Default: the hostname' -r
complete -c makuo -n "__fish_makuo_using_subcommand sync" -l state-dir -d 'Directory for persistent state (member identity, interrupted transfers)' -r -f -a "(__fish_complete_directories)"
complete -c makuo -n "__fish_makuo_using_subcommand sync" -l mtu -d 'Path MTU in bytes; datagrams are sized to fit it' -r
complete -c makuo -n "__fish_makuo_using_subcommand sync" -l interface -d 'Local interface to send and join multicast on: its name (eth1) or one of its addresses' -r -f
complete -c makuo -n "__fish_makuo_using_subcommand sync" -s r -l recursive -d 'Recurse into directories (without it, directories are skipped)'
complete -c makuo -n "__fish_makuo_using_subcommand sync" -s F -d 'Same as --filter=\'dir-merge /.rsync-filter\'; repeated, also --filter=\'- .rsync-filter\''
complete -c makuo -n "__fish_makuo_using_subcommand sync" -s 0 -l from0 -d 'The --files-from list is separated by NUL bytes, not lines'
complete -c makuo -n "__fish_makuo_using_subcommand sync" -s a -l archive -d 'Archive mode, rsync\'s -rlptgoD: recurse, and keep what makuo keeps'
complete -c makuo -n "__fish_makuo_using_subcommand sync" -s i -l itemize-changes -d 'Print a line per changed path, rsync\'s itemized format (YXcstpoguax PATH)'
complete -c makuo -n "__fish_makuo_using_subcommand sync" -l stats -d 'Print rsync\'s transfer statistics at the end'
complete -c makuo -n "__fish_makuo_using_subcommand sync" -s z -l compress -d 'Accepted for rsync compatibility; does nothing'
complete -c makuo -n "__fish_makuo_using_subcommand sync" -s n -l dry-run -d 'Show what would change; change nothing'
complete -c makuo -n "__fish_makuo_using_subcommand sync" -l delete -d 'Delete member paths under each PATH that the sender does not have'
complete -c makuo -n "__fish_makuo_using_subcommand sync" -l atomic -d 'All or none: commit only when every member has staged the whole push'
complete -c makuo -n "__fish_makuo_using_subcommand sync" -s c -l checksum -d 'Compare file contents by checksum, not size and mtime'
complete -c makuo -n "__fish_makuo_using_subcommand sync" -s H -l hard-links -d 'Keep hard links: files linked within the push travel once and arrive linked'
complete -c makuo -n "__fish_makuo_using_subcommand sync" -s S -l sparse -d 'Keep holes: only the data of sparse files travels, and they arrive sparse'
complete -c makuo -n "__fish_makuo_using_subcommand sync" -s D -d 'Same as --devices --specials'
complete -c makuo -n "__fish_makuo_using_subcommand sync" -l devices -d 'Send block and character device nodes'
complete -c makuo -n "__fish_makuo_using_subcommand sync" -l specials -d 'Send FIFOs and named sockets'
complete -c makuo -n "__fish_makuo_using_subcommand sync" -s X -l xattrs -d 'Keep extended attributes'
complete -c makuo -n "__fish_makuo_using_subcommand sync" -s A -l acls -d 'Keep POSIX ACLs (access ACLs, and default ACLs of directories; numeric ids)'
complete -c makuo -n "__fish_makuo_using_subcommand sync" -l progress -d 'Show progress while transferring'
complete -c makuo -n "__fish_makuo_using_subcommand sync" -l no-fsync -d 'Let members skip the durability step (fsync before rename) for this push'
complete -c makuo -n "__fish_makuo_using_subcommand sync" -l direct -d 'Do not use a daemon: walk the tree and multicast directly'
complete -c makuo -n "__fish_makuo_using_subcommand sync" -l relay -d 'Relay pushes: forward other members\' pushes when asked, and push through relays'
complete -c makuo -n "__fish_makuo_using_subcommand sync" -l insecure -d 'Run without a cluster key: unauthenticated, anyone on the LAN can push or delete files'
complete -c makuo -n "__fish_makuo_using_subcommand sync" -s v -l verbose -d 'Print more (repeat for even more)'
complete -c makuo -n "__fish_makuo_using_subcommand sync" -s q -l quiet -d 'Print errors only'
complete -c makuo -n "__fish_makuo_using_subcommand sync" -l json -d 'Print the result as one JSON document instead of text'
complete -c makuo -n "__fish_makuo_using_subcommand sync" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c makuo -n "__fish_makuo_using_subcommand check" -s t -l target -d 'Only this member (name or address; repeatable). Default: every live member' -r -f -a "(__fish_print_hostnames)"
complete -c makuo -n "__fish_makuo_using_subcommand check" -l exclude -d 'Exclude paths matching PATTERN (rsync rules; repeatable)' -r
complete -c makuo -n "__fish_makuo_using_subcommand check" -l include -d 'Do not exclude paths matching PATTERN (repeatable; see --exclude for the order)' -r
complete -c makuo -n "__fish_makuo_using_subcommand check" -l exclude-from -d 'Read exclude patterns from FILE, one a line (repeatable; see --exclude for the order)' -r -F
complete -c makuo -n "__fish_makuo_using_subcommand check" -l include-from -d 'Read include patterns from FILE, one a line (repeatable; as --exclude-from)' -r -F
complete -c makuo -n "__fish_makuo_using_subcommand check" -s f -l filter -d 'Add an rsync filter RULE (\'- *.o\', \'P /keep\', \'merge FILE\', \'dir-merge NAME\', \'clear\')' -r
complete -c makuo -n "__fish_makuo_using_subcommand check" -l files-from -d 'Push exactly the paths listed in FILE (\'-\': standard input), with their parents' -r -F
complete -c makuo -n "__fish_makuo_using_subcommand check" -l console -d 'Daemon console: HOST:PORT, or a unix socket path (anything containing \'/\')' -r
complete -c makuo -n "__fish_makuo_using_subcommand check" -s K -l password-file -d 'File holding the console password (the daemon\'s -K)' -r -F
complete -c makuo -n "__fish_makuo_using_subcommand check" -l discover -d 'In direct mode, the longest to listen for members before starting, in milliseconds' -r
complete -c makuo -n "__fish_makuo_using_subcommand check" -s b -l base -d 'Base directory: the tree that is pushed and received' -r -f -a "(__fish_complete_directories)"
complete -c makuo -n "__fish_makuo_using_subcommand check" -s m -l group -d 'Multicast group address, IPv4 or IPv6 (ff02::…, ff05::…, ff15::…)' -r -f
complete -c makuo -n "__fish_makuo_using_subcommand check" -s p -l port -d 'UDP port of the multicast group' -r
complete -c makuo -n "__fish_makuo_using_subcommand check" -s i -l interface -d 'Local interface to send and join multicast on: its name (eth1) or one of its addresses' -r -f
complete -c makuo -n "__fish_makuo_using_subcommand check" -l ttl -d 'Multicast hop limit (IPv4 TTL, IPv6 hops); above 1 routed multicast crosses subnets' -r
complete -c makuo -n "__fish_makuo_using_subcommand check" -l peer -d 'Member reached by unicast, ADDR[:PORT] (repeatable; PORT defaults to -p)' -r
complete -c makuo -n "__fish_makuo_using_subcommand check" -s k -l key -d 'Cluster key file (repeatable, at most 2): the first seals, both open' -r -F
complete -c makuo -n "__fish_makuo_using_subcommand check" -l name -d 'Member name announced to the cluster. Default: the hostname' -r
complete -c makuo -n "__fish_makuo_using_subcommand check" -l state-dir -d 'Directory for persistent state (member identity, interrupted transfers)' -r -f -a "(__fish_complete_directories)"
complete -c makuo -n "__fish_makuo_using_subcommand check" -l mtu -d 'Path MTU in bytes; datagrams are sized to fit it' -r
complete -c makuo -n "__fish_makuo_using_subcommand check" -s r -l recursive -d 'Recurse into directories (without it, directories are skipped)'
complete -c makuo -n "__fish_makuo_using_subcommand check" -s F -d 'Same as --filter=\'dir-merge /.rsync-filter\'; repeated, also --filter=\'- .rsync-filter\''
complete -c makuo -n "__fish_makuo_using_subcommand check" -s 0 -l from0 -d 'The --files-from list is separated by NUL bytes, not lines'
complete -c makuo -n "__fish_makuo_using_subcommand check" -l direct -d 'Do not use a daemon: walk the tree and multicast directly'
complete -c makuo -n "__fish_makuo_using_subcommand check" -l relay -d 'Relay pushes: forward other members\' pushes when asked, and push through relays'
complete -c makuo -n "__fish_makuo_using_subcommand check" -l insecure -d 'Run without a cluster key: unauthenticated, anyone on the LAN can push or delete files'
complete -c makuo -n "__fish_makuo_using_subcommand check" -s v -l verbose -d 'Print more (repeat for even more)'
complete -c makuo -n "__fish_makuo_using_subcommand check" -s q -l quiet -d 'Print errors only'
complete -c makuo -n "__fish_makuo_using_subcommand check" -l json -d 'Print the result as one JSON document instead of text'
complete -c makuo -n "__fish_makuo_using_subcommand check" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c makuo -n "__fish_makuo_using_subcommand rollback" -s t -l target -d 'Only this member (name or address; repeatable). Default: every live member' -r -f -a "(__fish_print_hostnames)"
complete -c makuo -n "__fish_makuo_using_subcommand rollback" -l timeout -d 'Give up when the daemon says nothing for this many seconds (exit 30)' -r
complete -c makuo -n "__fish_makuo_using_subcommand rollback" -l console -d 'Daemon console: HOST:PORT, or a unix socket path (anything containing \'/\')' -r
complete -c makuo -n "__fish_makuo_using_subcommand rollback" -s K -l password-file -d 'File holding the console password (the daemon\'s -K)' -r -F
complete -c makuo -n "__fish_makuo_using_subcommand rollback" -l discover -d 'In direct mode, the longest to listen for members before starting, in milliseconds' -r
complete -c makuo -n "__fish_makuo_using_subcommand rollback" -s b -l base -d 'Base directory: the tree that is pushed and received' -r -f -a "(__fish_complete_directories)"
complete -c makuo -n "__fish_makuo_using_subcommand rollback" -s m -l group -d 'Multicast group address, IPv4 or IPv6 (ff02::…, ff05::…, ff15::…)' -r -f
complete -c makuo -n "__fish_makuo_using_subcommand rollback" -s p -l port -d 'UDP port of the multicast group' -r
complete -c makuo -n "__fish_makuo_using_subcommand rollback" -l ttl -d 'Multicast hop limit (IPv4 TTL, IPv6 hops); above 1 routed multicast crosses subnets' -r
complete -c makuo -n "__fish_makuo_using_subcommand rollback" -l peer -d 'Member reached by unicast, ADDR[:PORT] (repeatable; PORT defaults to -p)' -r
complete -c makuo -n "__fish_makuo_using_subcommand rollback" -s k -l key -d 'Cluster key file (repeatable, at most 2): the first seals, both open' -r -F
complete -c makuo -n "__fish_makuo_using_subcommand rollback" -l name -d 'Member name announced to the cluster. Default: the hostname' -r
complete -c makuo -n "__fish_makuo_using_subcommand rollback" -l state-dir -d 'Directory for persistent state (member identity, interrupted transfers)' -r -f -a "(__fish_complete_directories)"
complete -c makuo -n "__fish_makuo_using_subcommand rollback" -l mtu -d 'Path MTU in bytes; datagrams are sized to fit it' -r
complete -c makuo -n "__fish_makuo_using_subcommand rollback" -l interface -d 'Local interface to send and join multicast on: its name (eth1) or one of its addresses' -r -f
complete -c makuo -n "__fish_makuo_using_subcommand rollback" -l direct -d 'Do not use a daemon: walk the tree and multicast directly'
complete -c makuo -n "__fish_makuo_using_subcommand rollback" -l relay -d 'Relay pushes: forward other members\' pushes when asked, and push through relays'
complete -c makuo -n "__fish_makuo_using_subcommand rollback" -l insecure -d 'Run without a cluster key: unauthenticated, anyone on the LAN can push or delete files'
complete -c makuo -n "__fish_makuo_using_subcommand rollback" -s v -l verbose -d 'Print more (repeat for even more)'
complete -c makuo -n "__fish_makuo_using_subcommand rollback" -s q -l quiet -d 'Print errors only'
complete -c makuo -n "__fish_makuo_using_subcommand rollback" -l json -d 'Print the result as one JSON document instead of text'
complete -c makuo -n "__fish_makuo_using_subcommand rollback" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c makuo -n "__fish_makuo_using_subcommand watch" -s t -l target -d 'Only this member (name or address; repeatable). Default: every live member' -r -f -a "(__fish_print_hostnames)"
complete -c makuo -n "__fish_makuo_using_subcommand watch" -l exclude -d 'Exclude paths matching PATTERN (rsync rules; repeatable)' -r
complete -c makuo -n "__fish_makuo_using_subcommand watch" -l include -d 'Do not exclude paths matching PATTERN (repeatable; see --exclude for the order)' -r
complete -c makuo -n "__fish_makuo_using_subcommand watch" -l exclude-from -d 'Read exclude patterns from FILE, one a line (repeatable; see --exclude for the order)' -r -F
complete -c makuo -n "__fish_makuo_using_subcommand watch" -l include-from -d 'Read include patterns from FILE, one a line (repeatable; as --exclude-from)' -r -F
complete -c makuo -n "__fish_makuo_using_subcommand watch" -s f -l filter -d 'Add an rsync filter RULE (\'- *.o\', \'P /keep\', \'merge FILE\', \'dir-merge NAME\', \'clear\')' -r
complete -c makuo -n "__fish_makuo_using_subcommand watch" -l delay -d 'Quiet period in milliseconds: changes are pushed once nothing changed for this long' -r
complete -c makuo -n "__fish_makuo_using_subcommand watch" -l console -d 'Daemon console: HOST:PORT, or a unix socket path (anything containing \'/\')' -r
complete -c makuo -n "__fish_makuo_using_subcommand watch" -s K -l password-file -d 'File holding the console password (the daemon\'s -K)' -r -F
complete -c makuo -n "__fish_makuo_using_subcommand watch" -l discover -d 'In direct mode, the longest to listen for members before starting, in milliseconds' -r
complete -c makuo -n "__fish_makuo_using_subcommand watch" -s b -l base -d 'Base directory: the tree that is pushed and received' -r -f -a "(__fish_complete_directories)"
complete -c makuo -n "__fish_makuo_using_subcommand watch" -s m -l group -d 'Multicast group address, IPv4 or IPv6 (ff02::…, ff05::…, ff15::…)' -r -f
complete -c makuo -n "__fish_makuo_using_subcommand watch" -s p -l port -d 'UDP port of the multicast group' -r
complete -c makuo -n "__fish_makuo_using_subcommand watch" -l ttl -d 'Multicast hop limit (IPv4 TTL, IPv6 hops); above 1 routed multicast crosses subnets' -r
complete -c makuo -n "__fish_makuo_using_subcommand watch" -l peer -d 'Member reached by unicast, ADDR[:PORT] (repeatable; PORT defaults to -p)' -r
complete -c makuo -n "__fish_makuo_using_subcommand watch" -s k -l key -d 'Cluster key file (repeatable, at most 2): the first seals, both open' -r -F
complete -c makuo -n "__fish_makuo_using_subcommand watch" -l name -d 'Member name announced to the cluster. Default: the hostname' -r
complete -c makuo -n "__fish_makuo_using_subcommand watch" -l state-dir -d 'Directory for persistent state (member identity, interrupted transfers)' -r -f -a "(__fish_complete_directories)"
complete -c makuo -n "__fish_makuo_using_subcommand watch" -l mtu -d 'Path MTU in bytes; datagrams are sized to fit it' -r
complete -c makuo -n "__fish_makuo_using_subcommand watch" -l interface -d 'Local interface to send and join multicast on: its name (eth1) or one of its addresses' -r -f
complete -c makuo -n "__fish_makuo_using_subcommand watch" -s r -l recursive -d 'Recurse into directories (without it, directories are skipped)'
complete -c makuo -n "__fish_makuo_using_subcommand watch" -s F -d 'Same as --filter=\'dir-merge /.rsync-filter\'; repeated, also --filter=\'- .rsync-filter\''
complete -c makuo -n "__fish_makuo_using_subcommand watch" -s a -l archive -d 'Archive mode: as makuo sync -a (implies -r)'
complete -c makuo -n "__fish_makuo_using_subcommand watch" -l delete -d 'Propagate deletions: member paths under each PATH that the sender lacks are deleted'
complete -c makuo -n "__fish_makuo_using_subcommand watch" -s c -l checksum -d 'Compare file contents by checksum, not size and mtime'
complete -c makuo -n "__fish_makuo_using_subcommand watch" -l no-fsync -d 'Let members skip the durability step (fsync before rename) for these pushes'
complete -c makuo -n "__fish_makuo_using_subcommand watch" -s i -l itemize-changes -d 'Print a line per changed path of each push (rsync\'s itemized format)'
complete -c makuo -n "__fish_makuo_using_subcommand watch" -s z -l compress -d 'Accepted for rsync compatibility; does nothing'
complete -c makuo -n "__fish_makuo_using_subcommand watch" -l list -d 'List the daemon\'s watches (with their last push and lag) and exit'
complete -c makuo -n "__fish_makuo_using_subcommand watch" -l stop -d 'Remove the daemon\'s watches on PATH... and exit'
complete -c makuo -n "__fish_makuo_using_subcommand watch" -l direct -d 'Do not use a daemon: walk the tree and multicast directly'
complete -c makuo -n "__fish_makuo_using_subcommand watch" -l relay -d 'Relay pushes: forward other members\' pushes when asked, and push through relays'
complete -c makuo -n "__fish_makuo_using_subcommand watch" -l insecure -d 'Run without a cluster key: unauthenticated, anyone on the LAN can push or delete files'
complete -c makuo -n "__fish_makuo_using_subcommand watch" -s v -l verbose -d 'Print more (repeat for even more)'
complete -c makuo -n "__fish_makuo_using_subcommand watch" -s q -l quiet -d 'Print errors only'
complete -c makuo -n "__fish_makuo_using_subcommand watch" -l json -d 'Print the result as one JSON document instead of text'
complete -c makuo -n "__fish_makuo_using_subcommand watch" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c makuo -n "__fish_makuo_using_subcommand members" -l forget -d 'Stop remembering member NAME (a server taken out of the cluster)' -r
complete -c makuo -n "__fish_makuo_using_subcommand members" -l console -d 'Daemon console: HOST:PORT, or a unix socket path (anything containing \'/\')' -r
complete -c makuo -n "__fish_makuo_using_subcommand members" -s K -l password-file -d 'File holding the console password (the daemon\'s -K)' -r -F
complete -c makuo -n "__fish_makuo_using_subcommand members" -l discover -d 'In direct mode, the longest to listen for members before starting, in milliseconds' -r
complete -c makuo -n "__fish_makuo_using_subcommand members" -s m -l group -d 'Multicast group address, IPv4 or IPv6 (ff02::…, ff05::…, ff15::…)' -r -f
complete -c makuo -n "__fish_makuo_using_subcommand members" -s p -l port -d 'UDP port of the multicast group' -r
complete -c makuo -n "__fish_makuo_using_subcommand members" -s i -l interface -d 'Local interface to send and join multicast on: its name (eth1) or one of its addresses' -r -f
complete -c makuo -n "__fish_makuo_using_subcommand members" -l ttl -d 'Multicast hop limit (IPv4 TTL, IPv6 hops); above 1 routed multicast crosses subnets' -r
complete -c makuo -n "__fish_makuo_using_subcommand members" -l peer -d 'Member reached by unicast, ADDR[:PORT] (repeatable; PORT defaults to -p)' -r
complete -c makuo -n "__fish_makuo_using_subcommand members" -s k -l key -d 'Cluster key file (repeatable, at most 2): the first seals, both open' -r -F
complete -c makuo -n "__fish_makuo_using_subcommand members" -l name -d 'Member name announced to the cluster. Default: the hostname' -r
complete -c makuo -n "__fish_makuo_using_subcommand members" -l mtu -d 'Path MTU in bytes; datagrams are sized to fit it' -r
complete -c makuo -n "__fish_makuo_using_subcommand members" -s b -l base -d 'Base directory: the tree that is pushed and received' -r -f -a "(__fish_complete_directories)"
complete -c makuo -n "__fish_makuo_using_subcommand members" -l state-dir -d 'Directory for persistent state (member identity, interrupted transfers)' -r -f -a "(__fish_complete_directories)"
complete -c makuo -n "__fish_makuo_using_subcommand members" -l direct -d 'Do not use a daemon: walk the tree and multicast directly'
complete -c makuo -n "__fish_makuo_using_subcommand members" -l relay -d 'Relay pushes: forward other members\' pushes when asked, and push through relays'
complete -c makuo -n "__fish_makuo_using_subcommand members" -l insecure -d 'Run without a cluster key: unauthenticated, anyone on the LAN can push or delete files'
complete -c makuo -n "__fish_makuo_using_subcommand members" -s v -l verbose -d 'Print more (repeat for even more)'
complete -c makuo -n "__fish_makuo_using_subcommand members" -s q -l quiet -d 'Print errors only'
complete -c makuo -n "__fish_makuo_using_subcommand members" -l json -d 'Print the result as one JSON document instead of text'
complete -c makuo -n "__fish_makuo_using_subcommand members" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c makuo -n "__fish_makuo_using_subcommand doctor" -l console -d 'Daemon console: HOST:PORT, or a unix socket path (anything containing \'/\')' -r
complete -c makuo -n "__fish_makuo_using_subcommand doctor" -s K -l password-file -d 'File holding the console password (the daemon\'s -K)' -r -F
complete -c makuo -n "__fish_makuo_using_subcommand doctor" -l discover -d 'In direct mode, the longest to listen for members before starting, in milliseconds' -r
complete -c makuo -n "__fish_makuo_using_subcommand doctor" -s b -l base -d 'Base directory: the tree that is pushed and received' -r -f -a "(__fish_complete_directories)"
complete -c makuo -n "__fish_makuo_using_subcommand doctor" -s m -l group -d 'Multicast group address, IPv4 or IPv6 (ff02::…, ff05::…, ff15::…)' -r -f
complete -c makuo -n "__fish_makuo_using_subcommand doctor" -s p -l port -d 'UDP port of the multicast group' -r
complete -c makuo -n "__fish_makuo_using_subcommand doctor" -s i -l interface -d 'Local interface to send and join multicast on: its name (eth1) or one of its addresses' -r -f
complete -c makuo -n "__fish_makuo_using_subcommand doctor" -l ttl -d 'Multicast hop limit (IPv4 TTL, IPv6 hops); above 1 routed multicast crosses subnets' -r
complete -c makuo -n "__fish_makuo_using_subcommand doctor" -l peer -d 'Member reached by unicast, ADDR[:PORT] (repeatable; PORT defaults to -p)' -r
complete -c makuo -n "__fish_makuo_using_subcommand doctor" -s k -l key -d 'Cluster key file (repeatable, at most 2): the first seals, both open' -r -F
complete -c makuo -n "__fish_makuo_using_subcommand doctor" -l name -d 'Member name announced to the cluster. Default: the hostname' -r
complete -c makuo -n "__fish_makuo_using_subcommand doctor" -l state-dir -d 'Directory for persistent state (member identity, interrupted transfers)' -r -f -a "(__fish_complete_directories)"
complete -c makuo -n "__fish_makuo_using_subcommand doctor" -l mtu -d 'Path MTU in bytes; datagrams are sized to fit it' -r
complete -c makuo -n "__fish_makuo_using_subcommand doctor" -l direct -d 'Do not use a daemon: walk the tree and multicast directly'
complete -c makuo -n "__fish_makuo_using_subcommand doctor" -l relay -d 'Relay pushes: forward other members\' pushes when asked, and push through relays'
complete -c makuo -n "__fish_makuo_using_subcommand doctor" -l insecure -d 'Run without a cluster key: unauthenticated, anyone on the LAN can push or delete files'
complete -c makuo -n "__fish_makuo_using_subcommand doctor" -s v -l verbose -d 'Print more (repeat for even more)'
complete -c makuo -n "__fish_makuo_using_subcommand doctor" -s q -l quiet -d 'Print errors only'
complete -c makuo -n "__fish_makuo_using_subcommand doctor" -l json -d 'Print the result as one JSON document instead of text'
complete -c makuo -n "__fish_makuo_using_subcommand doctor" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c makuo -n "__fish_makuo_using_subcommand status" -l console -d 'Daemon console: HOST:PORT, or a unix socket path (anything containing \'/\')' -r
complete -c makuo -n "__fish_makuo_using_subcommand status" -s K -l password-file -d 'File holding the console password (the daemon\'s -K)' -r -F
complete -c makuo -n "__fish_makuo_using_subcommand status" -s v -l verbose -d 'Print more (repeat for even more)'
complete -c makuo -n "__fish_makuo_using_subcommand status" -s q -l quiet -d 'Print errors only'
complete -c makuo -n "__fish_makuo_using_subcommand status" -l json -d 'Print the result as one JSON document instead of text'
complete -c makuo -n "__fish_makuo_using_subcommand status" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c makuo -n "__fish_makuo_using_subcommand exclude; and not __fish_seen_subcommand_from add del list clear" -l console -d 'Daemon console: HOST:PORT, or a unix socket path (anything containing \'/\')' -r
complete -c makuo -n "__fish_makuo_using_subcommand exclude; and not __fish_seen_subcommand_from add del list clear" -s K -l password-file -d 'File holding the console password (the daemon\'s -K)' -r -F
complete -c makuo -n "__fish_makuo_using_subcommand exclude; and not __fish_seen_subcommand_from add del list clear" -s v -l verbose -d 'Print more (repeat for even more)'
complete -c makuo -n "__fish_makuo_using_subcommand exclude; and not __fish_seen_subcommand_from add del list clear" -s q -l quiet -d 'Print errors only'
complete -c makuo -n "__fish_makuo_using_subcommand exclude; and not __fish_seen_subcommand_from add del list clear" -l json -d 'Print the result as one JSON document instead of text'
complete -c makuo -n "__fish_makuo_using_subcommand exclude; and not __fish_seen_subcommand_from add del list clear" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c makuo -n "__fish_makuo_using_subcommand exclude; and not __fish_seen_subcommand_from add del list clear" -f -a "add" -d 'Add patterns to the standing exclude list'
complete -c makuo -n "__fish_makuo_using_subcommand exclude; and not __fish_seen_subcommand_from add del list clear" -f -a "del" -d 'Remove patterns from the standing exclude list'
complete -c makuo -n "__fish_makuo_using_subcommand exclude; and not __fish_seen_subcommand_from add del list clear" -f -a "list" -d 'Print the standing exclude list'
complete -c makuo -n "__fish_makuo_using_subcommand exclude; and not __fish_seen_subcommand_from add del list clear" -f -a "clear" -d 'Empty the standing exclude list'
complete -c makuo -n "__fish_makuo_using_subcommand exclude; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help'
complete -c makuo -n "__fish_makuo_using_subcommand exclude; and __fish_seen_subcommand_from del" -s h -l help -d 'Print help'
complete -c makuo -n "__fish_makuo_using_subcommand exclude; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c makuo -n "__fish_makuo_using_subcommand exclude; and __fish_seen_subcommand_from clear" -s h -l help -d 'Print help'
complete -c makuo -n "__fish_makuo_using_subcommand loglevel" -l console -d 'Daemon console: HOST:PORT, or a unix socket path (anything containing \'/\')' -r
complete -c makuo -n "__fish_makuo_using_subcommand loglevel" -s K -l password-file -d 'File holding the console password (the daemon\'s -K)' -r -F
complete -c makuo -n "__fish_makuo_using_subcommand loglevel" -s v -l verbose -d 'Print more (repeat for even more)'
complete -c makuo -n "__fish_makuo_using_subcommand loglevel" -s q -l quiet -d 'Print errors only'
complete -c makuo -n "__fish_makuo_using_subcommand loglevel" -l json -d 'Print the result as one JSON document instead of text'
complete -c makuo -n "__fish_makuo_using_subcommand loglevel" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c makuo -n "__fish_makuo_using_subcommand keygen" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c makuo -n "__fish_makuo_using_subcommand demo" -l members -d 'Number of daemons to start' -r
complete -c makuo -n "__fish_makuo_using_subcommand demo" -l files -d 'Number of files in the generated tree' -r
complete -c makuo -n "__fish_makuo_using_subcommand demo" -l keep -d 'Keep the temporary directory and print its path'
complete -c makuo -n "__fish_makuo_using_subcommand demo" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c makuo -n "__fish_makuo_using_subcommand help" -s h -l help -d 'Print help'
