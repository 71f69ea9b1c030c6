_makuo() {
    local i cur prev opts cmd
    COMPREPLY=()
    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
        cur="$2"
    else
        cur="${COMP_WORDS[COMP_CWORD]}"
    fi
    prev="$3"
    cmd=""
    opts=""

    for i in "${COMP_WORDS[@]:0:COMP_CWORD}"
    do
        case "${cmd},${i}" in
            ",$1")
                cmd="makuo"
                ;;
            makuo,check)
                cmd="makuo__subcmd__check"
                ;;
            makuo,daemon)
                cmd="makuo__subcmd__daemon"
                ;;
            makuo,demo)
                cmd="makuo__subcmd__demo"
                ;;
            makuo,doctor)
                cmd="makuo__subcmd__doctor"
                ;;
            makuo,exclude)
                cmd="makuo__subcmd__exclude"
                ;;
            makuo,help)
                cmd="makuo__subcmd__help"
                ;;
            makuo,keygen)
                cmd="makuo__subcmd__keygen"
                ;;
            makuo,loglevel)
                cmd="makuo__subcmd__loglevel"
                ;;
            makuo,members)
                cmd="makuo__subcmd__members"
                ;;
            makuo,rollback)
                cmd="makuo__subcmd__rollback"
                ;;
            makuo,status)
                cmd="makuo__subcmd__status"
                ;;
            makuo,sync)
                cmd="makuo__subcmd__sync"
                ;;
            makuo,watch)
                cmd="makuo__subcmd__watch"
                ;;
            makuo__subcmd__exclude,add)
                cmd="makuo__subcmd__exclude__subcmd__add"
                ;;
            makuo__subcmd__exclude,clear)
                cmd="makuo__subcmd__exclude__subcmd__clear"
                ;;
            makuo__subcmd__exclude,del)
                cmd="makuo__subcmd__exclude__subcmd__del"
                ;;
            makuo__subcmd__exclude,list)
                cmd="makuo__subcmd__exclude__subcmd__list"
                ;;
            *)
                ;;
        esac
    done

    case "${cmd}" in
        makuo)
            opts="-h -V --help --version daemon sync check rollback watch members doctor status exclude loglevel keygen demo help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 1 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        makuo__subcmd__check)
            opts="-r -t -f -F -0 -K -b -m -p -i -k -v -q -h --recursive --target --exclude --include --exclude-from --include-from --filter --files-from --from0 --console --password-file --direct --discover --base --group --port --interface --ttl --peer --relay --key --insecure --name --state-dir --mtu --verbose --quiet --json --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --target)
                    COMPREPLY=($(compgen -W "$(makuo members 2>/dev/null | awk 'NR>1 {print $1}')" -- "${cur}"))
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                -t)
                    COMPREPLY=($(compgen -W "$(makuo members 2>/dev/null | awk 'NR>1 {print $1}')" -- "${cur}"))
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --exclude)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --include)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --exclude-from)
                    local oldifs
                    if [ -n "${IFS+x}" ]; then
                        oldifs="$IFS"
                    fi
                    IFS=$'\n'
                    COMPREPLY=($(compgen -f "${cur}"))
                    if [ -n "${oldifs+x}" ]; then
                        IFS="$oldifs"
                    fi
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o filenames
                    fi
                    return 0
                    ;;
                --include-from)
                    local oldifs
                    if [ -n "${IFS+x}" ]; then
                        oldifs="$IFS"
                    fi
                    IFS=$'\n'
                    COMPREPLY=($(compgen -f "${cur}"))
                    if [ -n "${oldifs+x}" ]; then
                        IFS="$oldifs"
                    fi
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o filenames
                    fi
                    return 0
                    ;;
                --filter)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                -f)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --files-from)
                    local oldifs
                    if [ -n "${IFS+x}" ]; then
                        oldifs="$IFS"
                    fi
                    IFS=$'\n'
                    COMPREPLY=($(compgen -f "${cur}"))
                    if [ -n "${oldifs+x}" ]; then
                        IFS="$oldifs"
                    fi
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o filenames
                    fi
                    return 0
                    ;;
                --console)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --password-file)
                    local oldifs
                    if [ -n "${IFS+x}" ]; then
                        oldifs="$IFS"
                    fi
                    IFS=$'\n'
                    COMPREPLY=($(compgen -f "${cur}"))
                    if [ -n "${oldifs+x}" ]; then
                        IFS="$oldifs"
                    fi
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o filenames
                    fi
                    return 0
                    ;;
                -K)
                    local oldifs
                    if [ -n "${IFS+x}" ]; then
                        oldifs="$IFS"
                    fi
                    IFS=$'\n'
                    COMPREPLY=($(compgen -f "${cur}"))
                    if [ -n "${oldifs+x}" ]; then
                        IFS="$oldifs"
                    fi
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o filenames
                    fi
                    return 0
                    ;;
                --discover)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --base)
                    COMPREPLY=()
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o plusdirs
                    fi
                    return 0
                    ;;
                -b)
                    COMPREPLY=()
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o plusdirs
                    fi
                    return 0
                    ;;
                --group)
                    COMPREPLY=("${cur}")
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o nospace
                    fi
                    return 0
                    ;;
                -m)
                    COMPREPLY=("${cur}")
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o nospace
                    fi
                    return 0
                    ;;
                --port)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                -p)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --interface)
                    COMPREPLY=("${cur}")
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o nospace
                    fi
                    return 0
                    ;;
                -i)
                    COMPREPLY=("${cur}")
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o nospace
                    fi
                    return 0
                    ;;
                --ttl)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --peer)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --key)
                    local oldifs
                    if [ -n "${IFS+x}" ]; then
                        oldifs="$IFS"
                    fi
                    IFS=$'\n'
                    COMPREPLY=($(compgen -f "${cur}"))
                    if [ -n "${oldifs+x}" ]; then
                        IFS="$oldifs"
                    fi
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o filenames
                    fi
                    return 0
                    ;;
                -k)
                    local oldifs
                    if [ -n "${IFS+x}" ]; then
                        oldifs="$IFS"
                    fi
                    IFS=$'\n'
                    COMPREPLY=($(compgen -f "${cur}"))
                    if [ -n "${oldifs+x}" ]; then
                        IFS="$oldifs"
                    fi
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o filenames
                    fi
                    return 0
                    ;;
                --name)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --state-dir)
                    COMPREPLY=()
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o plusdirs
                    fi
                    return 0
                    ;;
                --mtu)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        makuo__subcmd__daemon)
            opts="-b -m -p -i -k -P -l -o -U -K -n -d -u -g -G -c -r -s -f -T -R -S -O -h --base --group --port --interface --ttl --peer --relay --key --insecure --name --state-dir --mtu --bind --reply-port --config --print-config --console-port --console-addr --no-console --console-socket --password-file --console-group --foreground --loglevel --log-file --pid-file --syslog --syslog-socket --metrics --user --group-id --run-group --groups --chroot --chroot-dir --no-receive --no-send --parallel --rate --min-rate --rcvbuf --sndbuf --no-fsync --heartbeat --member-timeout --member-expiry --allow-devices --owner-match --preserve-owner --protect --max-delete --after-push --before-commit --hook-timeout --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --base)
                    COMPREPLY=()
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o plusdirs
                    fi
                    return 0
                    ;;
                -b)
                    COMPREPLY=()
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o plusdirs
                    fi
                    return 0
                    ;;
                --group)
                    COMPREPLY=("${cur}")
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o nospace
                    fi
                    return 0
                    ;;
                -m)
                    COMPREPLY=("${cur}")
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o nospace
                    fi
                    return 0
                    ;;
                --port)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                -p)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --interface)
                    COMPREPLY=("${cur}")
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o nospace
                    fi
                    return 0
                    ;;
                -i)
                    COMPREPLY=("${cur}")
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o nospace
                    fi
                    return 0
                    ;;
                --ttl)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --peer)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --key)
                    local oldifs
                    if [ -n "${IFS+x}" ]; then
                        oldifs="$IFS"
                    fi
                    IFS=$'\n'
                    COMPREPLY=($(compgen -f "${cur}"))
                    if [ -n "${oldifs+x}" ]; then
                        IFS="$oldifs"
                    fi
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o filenames
                    fi
                    return 0
                    ;;
                -k)
                    local oldifs
                    if [ -n "${IFS+x}" ]; then
                        oldifs="$IFS"
                    fi
                    IFS=$'\n'
                    COMPREPLY=($(compgen -f "${cur}"))
                    if [ -n "${oldifs+x}" ]; then
                        IFS="$oldifs"
                    fi
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o filenames
                    fi
                    return 0
                    ;;
                --name)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --state-dir)
                    COMPREPLY=()
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o plusdirs
                    fi
                    return 0
                    ;;
                --mtu)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --bind)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --reply-port)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --config)
                    local oldifs
                    if [ -n "${IFS+x}" ]; then
                        oldifs="$IFS"
                    fi
                    IFS=$'\n'
                    COMPREPLY=($(compgen -f "${cur}"))
                    if [ -n "${oldifs+x}" ]; then
                        IFS="$oldifs"
                    fi
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o filenames
                    fi
                    return 0
                    ;;
                --console-port)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                -P)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --console-addr)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                -l)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --console-socket)
                    local oldifs
                    if [ -n "${IFS+x}" ]; then
                        oldifs="$IFS"
                    fi
                    IFS=$'\n'
                    COMPREPLY=($(compgen -f "${cur}"))
                    if [ -n "${oldifs+x}" ]; then
                        IFS="$oldifs"
                    fi
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o filenames
                    fi
                    return 0
                    ;;
                -U)
                    local oldifs
                    if [ -n "${IFS+x}" ]; then
                        oldifs="$IFS"
                    fi
                    IFS=$'\n'
                    COMPREPLY=($(compgen -f "${cur}"))
                    if [ -n "${oldifs+x}" ]; then
                        IFS="$oldifs"
                    fi
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o filenames
                    fi
                    return 0
                    ;;
                --password-file)
                    local oldifs
                    if [ -n "${IFS+x}" ]; then
                        oldifs="$IFS"
                    fi
                    IFS=$'\n'
                    COMPREPLY=($(compgen -f "${cur}"))
                    if [ -n "${oldifs+x}" ]; then
                        IFS="$oldifs"
                    fi
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o filenames
                    fi
                    return 0
                    ;;
                -K)
                    local oldifs
                    if [ -n "${IFS+x}" ]; then
                        oldifs="$IFS"
                    fi
                    IFS=$'\n'
                    COMPREPLY=($(compgen -f "${cur}"))
                    if [ -n "${oldifs+x}" ]; then
                        IFS="$oldifs"
                    fi
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o filenames
                    fi
                    return 0
                    ;;
                --console-group)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --loglevel)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                -d)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --log-file)
                    local oldifs
                    if [ -n "${IFS+x}" ]; then
                        oldifs="$IFS"
                    fi
                    IFS=$'\n'
                    COMPREPLY=($(compgen -f "${cur}"))
                    if [ -n "${oldifs+x}" ]; then
                        IFS="$oldifs"
                    fi
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o filenames
                    fi
                    return 0
                    ;;
                --pid-file)
                    local oldifs
                    if [ -n "${IFS+x}" ]; then
                        oldifs="$IFS"
                    fi
                    IFS=$'\n'
                    COMPREPLY=($(compgen -f "${cur}"))
                    if [ -n "${oldifs+x}" ]; then
                        IFS="$oldifs"
                    fi
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o filenames
                    fi
                    return 0
                    ;;
                --syslog-socket)
                    local oldifs
                    if [ -n "${IFS+x}" ]; then
                        oldifs="$IFS"
                    fi
                    IFS=$'\n'
                    COMPREPLY=($(compgen -f "${cur}"))
                    if [ -n "${oldifs+x}" ]; then
                        IFS="$oldifs"
                    fi
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o filenames
                    fi
                    return 0
                    ;;
                --metrics)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --user)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                -u)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --run-group)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --group-id)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                -g)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --groups)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                -G)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --chroot-dir)
                    COMPREPLY=()
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o plusdirs
                    fi
                    return 0
                    ;;
                --parallel)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                -f)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --rate)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                -T)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --min-rate)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --rcvbuf)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                -R)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --sndbuf)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                -S)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --heartbeat)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --member-timeout)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --member-expiry)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --protect)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --max-delete)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --after-push)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --before-commit)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --hook-timeout)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        makuo__subcmd__demo)
            opts="-h --members --files --keep --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --members)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --files)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        makuo__subcmd__doctor)
            opts="-K -b -m -p -i -k -v -q -h --console --password-file --direct --discover --base --group --port --interface --ttl --peer --relay --key --insecure --name --state-dir --mtu --verbose --quiet --json --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --console)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --password-file)
                    local oldifs
                    if [ -n "${IFS+x}" ]; then
                        oldifs="$IFS"
                    fi
                    IFS=$'\n'
                    COMPREPLY=($(compgen -f "${cur}"))
                    if [ -n "${oldifs+x}" ]; then
                        IFS="$oldifs"
                    fi
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o filenames
                    fi
                    return 0
                    ;;
                -K)
                    local oldifs
                    if [ -n "${IFS+x}" ]; then
                        oldifs="$IFS"
                    fi
                    IFS=$'\n'
                    COMPREPLY=($(compgen -f "${cur}"))
                    if [ -n "${oldifs+x}" ]; then
                        IFS="$oldifs"
                    fi
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o filenames
                    fi
                    return 0
                    ;;
                --discover)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --base)
                    COMPREPLY=()
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o plusdirs
                    fi
                    return 0
                    ;;
                -b)
                    COMPREPLY=()
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o plusdirs
                    fi
                    return 0
                    ;;
                --group)
                    COMPREPLY=("${cur}")
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o nospace
                    fi
                    return 0
                    ;;
                -m)
                    COMPREPLY=("${cur}")
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o nospace
                    fi
                    return 0
                    ;;
                --port)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                -p)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --interface)
                    COMPREPLY=("${cur}")
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o nospace
                    fi
                    return 0
                    ;;
                -i)
                    COMPREPLY=("${cur}")
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o nospace
                    fi
                    return 0
                    ;;
                --ttl)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --peer)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --key)
                    local oldifs
                    if [ -n "${IFS+x}" ]; then
                        oldifs="$IFS"
                    fi
                    IFS=$'\n'
                    COMPREPLY=($(compgen -f "${cur}"))
                    if [ -n "${oldifs+x}" ]; then
                        IFS="$oldifs"
                    fi
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o filenames
                    fi
                    return 0
                    ;;
                -k)
                    local oldifs
                    if [ -n "${IFS+x}" ]; then
                        oldifs="$IFS"
                    fi
                    IFS=$'\n'
                    COMPREPLY=($(compgen -f "${cur}"))
                    if [ -n "${oldifs+x}" ]; then
                        IFS="$oldifs"
                    fi
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o filenames
                    fi
                    return 0
                    ;;
                --name)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --state-dir)
                    COMPREPLY=()
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o plusdirs
                    fi
                    return 0
                    ;;
                --mtu)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        makuo__subcmd__exclude)
            opts="-K -v -q -h --console --password-file --verbose --quiet --json --help add del list clear"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --console)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --password-file)
                    local oldifs
                    if [ -n "${IFS+x}" ]; then
                        oldifs="$IFS"
                    fi
                    IFS=$'\n'
                    COMPREPLY=($(compgen -f "${cur}"))
                    if [ -n "${oldifs+x}" ]; then
                        IFS="$oldifs"
                    fi
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o filenames
                    fi
                    return 0
                    ;;
                -K)
                    local oldifs
                    if [ -n "${IFS+x}" ]; then
                        oldifs="$IFS"
                    fi
                    IFS=$'\n'
                    COMPREPLY=($(compgen -f "${cur}"))
                    if [ -n "${oldifs+x}" ]; then
                        IFS="$oldifs"
                    fi
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o filenames
                    fi
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        makuo__subcmd__exclude__subcmd__add)
            opts="-h --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        makuo__subcmd__exclude__subcmd__clear)
            opts="-h --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        makuo__subcmd__exclude__subcmd__del)
            opts="-h --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        makuo__subcmd__exclude__subcmd__list)
            opts="-h --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 3 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        makuo__subcmd__help)
            opts="-h --help daemon sync check rollback watch members doctor status exclude loglevel keygen demo"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        makuo__subcmd__keygen)
            opts="-h --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        makuo__subcmd__loglevel)
            opts="-K -v -q -h --console --password-file --verbose --quiet --json --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --console)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --password-file)
                    local oldifs
                    if [ -n "${IFS+x}" ]; then
                        oldifs="$IFS"
                    fi
                    IFS=$'\n'
                    COMPREPLY=($(compgen -f "${cur}"))
                    if [ -n "${oldifs+x}" ]; then
                        IFS="$oldifs"
                    fi
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o filenames
                    fi
                    return 0
                    ;;
                -K)
                    local oldifs
                    if [ -n "${IFS+x}" ]; then
                        oldifs="$IFS"
                    fi
                    IFS=$'\n'
                    COMPREPLY=($(compgen -f "${cur}"))
                    if [ -n "${oldifs+x}" ]; then
                        IFS="$oldifs"
                    fi
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o filenames
                    fi
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        makuo__subcmd__members)
            opts="-K -m -p -i -k -v -q -b -h --forget --console --password-file --direct --discover --group --port --interface --ttl --peer --relay --key --insecure --name --mtu --verbose --quiet --json --base --state-dir --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --forget)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --console)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --password-file)
                    local oldifs
                    if [ -n "${IFS+x}" ]; then
                        oldifs="$IFS"
                    fi
                    IFS=$'\n'
                    COMPREPLY=($(compgen -f "${cur}"))
                    if [ -n "${oldifs+x}" ]; then
                        IFS="$oldifs"
                    fi
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o filenames
                    fi
                    return 0
                    ;;
                -K)
                    local oldifs
                    if [ -n "${IFS+x}" ]; then
                        oldifs="$IFS"
                    fi
                    IFS=$'\n'
                    COMPREPLY=($(compgen -f "${cur}"))
                    if [ -n "${oldifs+x}" ]; then
                        IFS="$oldifs"
                    fi
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o filenames
                    fi
                    return 0
                    ;;
                --discover)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --group)
                    COMPREPLY=("${cur}")
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o nospace
                    fi
                    return 0
                    ;;
                -m)
                    COMPREPLY=("${cur}")
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o nospace
                    fi
                    return 0
                    ;;
                --port)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                -p)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --interface)
                    COMPREPLY=("${cur}")
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o nospace
                    fi
                    return 0
                    ;;
                -i)
                    COMPREPLY=("${cur}")
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o nospace
                    fi
                    return 0
                    ;;
                --ttl)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --peer)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --key)
                    local oldifs
                    if [ -n "${IFS+x}" ]; then
                        oldifs="$IFS"
                    fi
                    IFS=$'\n'
                    COMPREPLY=($(compgen -f "${cur}"))
                    if [ -n "${oldifs+x}" ]; then
                        IFS="$oldifs"
                    fi
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o filenames
                    fi
                    return 0
                    ;;
                -k)
                    local oldifs
                    if [ -n "${IFS+x}" ]; then
                        oldifs="$IFS"
                    fi
                    IFS=$'\n'
                    COMPREPLY=($(compgen -f "${cur}"))
                    if [ -n "${oldifs+x}" ]; then
                        IFS="$oldifs"
                    fi
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o filenames
                    fi
                    return 0
                    ;;
                --name)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --mtu)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --base)
                    COMPREPLY=()
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o plusdirs
                    fi
                    return 0
                    ;;
                -b)
                    COMPREPLY=()
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o plusdirs
                    fi
                    return 0
                    ;;
                --state-dir)
                    COMPREPLY=()
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o plusdirs
                    fi
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        makuo__subcmd__rollback)
            opts="-t -K -b -m -p -k -v -q -h --target --timeout --console --password-file --direct --discover --base --group --port --ttl --peer --relay --key --insecure --name --state-dir --mtu --verbose --quiet --json --interface --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --target)
                    COMPREPLY=($(compgen -W "$(makuo members 2>/dev/null | awk 'NR>1 {print $1}')" -- "${cur}"))
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                -t)
                    COMPREPLY=($(compgen -W "$(makuo members 2>/dev/null | awk 'NR>1 {print $1}')" -- "${cur}"))
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --timeout)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --console)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --password-file)
                    local oldifs
                    if [ -n "${IFS+x}" ]; then
                        oldifs="$IFS"
                    fi
                    IFS=$'\n'
                    COMPREPLY=($(compgen -f "${cur}"))
                    if [ -n "${oldifs+x}" ]; then
                        IFS="$oldifs"
                    fi
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o filenames
                    fi
                    return 0
                    ;;
                -K)
                    local oldifs
                    if [ -n "${IFS+x}" ]; then
                        oldifs="$IFS"
                    fi
                    IFS=$'\n'
                    COMPREPLY=($(compgen -f "${cur}"))
                    if [ -n "${oldifs+x}" ]; then
                        IFS="$oldifs"
                    fi
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o filenames
                    fi
                    return 0
                    ;;
                --discover)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --base)
                    COMPREPLY=()
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o plusdirs
                    fi
                    return 0
                    ;;
                -b)
                    COMPREPLY=()
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o plusdirs
                    fi
                    return 0
                    ;;
                --group)
                    COMPREPLY=("${cur}")
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o nospace
                    fi
                    return 0
                    ;;
                -m)
                    COMPREPLY=("${cur}")
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o nospace
                    fi
                    return 0
                    ;;
                --port)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                -p)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --ttl)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --peer)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --key)
                    local oldifs
                    if [ -n "${IFS+x}" ]; then
                        oldifs="$IFS"
                    fi
                    IFS=$'\n'
                    COMPREPLY=($(compgen -f "${cur}"))
                    if [ -n "${oldifs+x}" ]; then
                        IFS="$oldifs"
                    fi
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o filenames
                    fi
                    return 0
                    ;;
                -k)
                    local oldifs
                    if [ -n "${IFS+x}" ]; then
                        oldifs="$IFS"
                    fi
                    IFS=$'\n'
                    COMPREPLY=($(compgen -f "${cur}"))
                    if [ -n "${oldifs+x}" ]; then
                        IFS="$oldifs"
                    fi
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o filenames
                    fi
                    return 0
                    ;;
                --name)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --state-dir)
                    COMPREPLY=()
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o plusdirs
                    fi
                    return 0
                    ;;
                --mtu)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --interface)
                    COMPREPLY=("${cur}")
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o nospace
                    fi
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        makuo__subcmd__status)
            opts="-K -v -q -h --console --password-file --verbose --quiet --json --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --console)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --password-file)
                    local oldifs
                    if [ -n "${IFS+x}" ]; then
                        oldifs="$IFS"
                    fi
                    IFS=$'\n'
                    COMPREPLY=($(compgen -f "${cur}"))
                    if [ -n "${oldifs+x}" ]; then
                        IFS="$oldifs"
                    fi
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o filenames
                    fi
                    return 0
                    ;;
                -K)
                    local oldifs
                    if [ -n "${IFS+x}" ]; then
                        oldifs="$IFS"
                    fi
                    IFS=$'\n'
                    COMPREPLY=($(compgen -f "${cur}"))
                    if [ -n "${oldifs+x}" ]; then
                        IFS="$oldifs"
                    fi
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o filenames
                    fi
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        makuo__subcmd__sync)
            opts="-r -t -f -F -0 -a -i -z -n -c -H -S -D -X -A -K -b -m -p -k -v -q -h --recursive --target --exclude --include --exclude-from --include-from --filter --files-from --from0 --archive --itemize-changes --stats --compress --dry-run --delete --max-delete --atomic --release --keep-releases --checksum --hard-links --sparse --devices --specials --xattrs --acls --bwlimit --min-rate --timeout --progress --no-fsync --console --password-file --direct --discover --base --group --port --ttl --peer --relay --key --insecure --name --state-dir --mtu --verbose --quiet --json --interface --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --target)
                    COMPREPLY=($(compgen -W "$(makuo members 2>/dev/null | awk 'NR>1 {print $1}')" -- "${cur}"))
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                -t)
                    COMPREPLY=($(compgen -W "$(makuo members 2>/dev/null | awk 'NR>1 {print $1}')" -- "${cur}"))
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --exclude)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --include)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --exclude-from)
                    local oldifs
                    if [ -n "${IFS+x}" ]; then
                        oldifs="$IFS"
                    fi
                    IFS=$'\n'
                    COMPREPLY=($(compgen -f "${cur}"))
                    if [ -n "${oldifs+x}" ]; then
                        IFS="$oldifs"
                    fi
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o filenames
                    fi
                    return 0
                    ;;
                --include-from)
                    local oldifs
                    if [ -n "${IFS+x}" ]; then
                        oldifs="$IFS"
                    fi
                    IFS=$'\n'
                    COMPREPLY=($(compgen -f "${cur}"))
                    if [ -n "${oldifs+x}" ]; then
                        IFS="$oldifs"
                    fi
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o filenames
                    fi
                    return 0
                    ;;
                --filter)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                -f)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --files-from)
                    local oldifs
                    if [ -n "${IFS+x}" ]; then
                        oldifs="$IFS"
                    fi
                    IFS=$'\n'
                    COMPREPLY=($(compgen -f "${cur}"))
                    if [ -n "${oldifs+x}" ]; then
                        IFS="$oldifs"
                    fi
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o filenames
                    fi
                    return 0
                    ;;
                --max-delete)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --release)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --keep-releases)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --bwlimit)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --min-rate)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --timeout)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --console)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --password-file)
                    local oldifs
                    if [ -n "${IFS+x}" ]; then
                        oldifs="$IFS"
                    fi
                    IFS=$'\n'
                    COMPREPLY=($(compgen -f "${cur}"))
                    if [ -n "${oldifs+x}" ]; then
                        IFS="$oldifs"
                    fi
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o filenames
                    fi
                    return 0
                    ;;
                -K)
                    local oldifs
                    if [ -n "${IFS+x}" ]; then
                        oldifs="$IFS"
                    fi
                    IFS=$'\n'
                    COMPREPLY=($(compgen -f "${cur}"))
                    if [ -n "${oldifs+x}" ]; then
                        IFS="$oldifs"
                    fi
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o filenames
                    fi
                    return 0
                    ;;
                --discover)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --base)
                    COMPREPLY=()
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o plusdirs
                    fi
                    return 0
                    ;;
                -b)
                    COMPREPLY=()
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o plusdirs
                    fi
                    return 0
                    ;;
                --group)
                    COMPREPLY=("${cur}")
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o nospace
                    fi
                    return 0
                    ;;
                -m)
                    COMPREPLY=("${cur}")
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o nospace
                    fi
                    return 0
                    ;;
                --port)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                -p)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --ttl)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --peer)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --key)
                    local oldifs
                    if [ -n "${IFS+x}" ]; then
                        oldifs="$IFS"
                    fi
                    IFS=$'\n'
                    COMPREPLY=($(compgen -f "${cur}"))
                    if [ -n "${oldifs+x}" ]; then
                        IFS="$oldifs"
                    fi
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o filenames
                    fi
                    return 0
                    ;;
                -k)
                    local oldifs
                    if [ -n "${IFS+x}" ]; then
                        oldifs="$IFS"
                    fi
                    IFS=$'\n'
                    COMPREPLY=($(compgen -f "${cur}"))
                    if [ -n "${oldifs+x}" ]; then
                        IFS="$oldifs"
                    fi
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o filenames
                    fi
                    return 0
                    ;;
                --name)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --state-dir)
                    COMPREPLY=()
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o plusdirs
                    fi
                    return 0
                    ;;
                --mtu)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --interface)
                    COMPREPLY=("${cur}")
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o nospace
                    fi
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
        makuo__subcmd__watch)
            opts="-r -t -f -F -a -c -i -z -K -b -m -p -k -v -q -h --recursive --target --exclude --include --exclude-from --include-from --filter --archive --delete --delay --checksum --no-fsync --itemize-changes --compress --list --stop --console --password-file --direct --discover --base --group --port --ttl --peer --relay --key --insecure --name --state-dir --mtu --verbose --quiet --json --interface --help"
            if [[ ${cur} == -* || ${COMP_CWORD} -eq 2 ]] ; then
                COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
                return 0
            fi
            case "${prev}" in
                --target)
                    COMPREPLY=($(compgen -W "$(makuo members 2>/dev/null | awk 'NR>1 {print $1}')" -- "${cur}"))
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                -t)
                    COMPREPLY=($(compgen -W "$(makuo members 2>/dev/null | awk 'NR>1 {print $1}')" -- "${cur}"))
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --exclude)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --include)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --exclude-from)
                    local oldifs
                    if [ -n "${IFS+x}" ]; then
                        oldifs="$IFS"
                    fi
                    IFS=$'\n'
                    COMPREPLY=($(compgen -f "${cur}"))
                    if [ -n "${oldifs+x}" ]; then
                        IFS="$oldifs"
                    fi
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o filenames
                    fi
                    return 0
                    ;;
                --include-from)
                    local oldifs
                    if [ -n "${IFS+x}" ]; then
                        oldifs="$IFS"
                    fi
                    IFS=$'\n'
                    COMPREPLY=($(compgen -f "${cur}"))
                    if [ -n "${oldifs+x}" ]; then
                        IFS="$oldifs"
                    fi
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o filenames
                    fi
                    return 0
                    ;;
                --filter)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                -f)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --delay)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --console)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --password-file)
                    local oldifs
                    if [ -n "${IFS+x}" ]; then
                        oldifs="$IFS"
                    fi
                    IFS=$'\n'
                    COMPREPLY=($(compgen -f "${cur}"))
                    if [ -n "${oldifs+x}" ]; then
                        IFS="$oldifs"
                    fi
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o filenames
                    fi
                    return 0
                    ;;
                -K)
                    local oldifs
                    if [ -n "${IFS+x}" ]; then
                        oldifs="$IFS"
                    fi
                    IFS=$'\n'
                    COMPREPLY=($(compgen -f "${cur}"))
                    if [ -n "${oldifs+x}" ]; then
                        IFS="$oldifs"
                    fi
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o filenames
                    fi
                    return 0
                    ;;
                --discover)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --base)
                    COMPREPLY=()
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o plusdirs
                    fi
                    return 0
                    ;;
                -b)
                    COMPREPLY=()
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o plusdirs
                    fi
                    return 0
                    ;;
                --group)
                    COMPREPLY=("${cur}")
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o nospace
                    fi
                    return 0
                    ;;
                -m)
                    COMPREPLY=("${cur}")
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o nospace
                    fi
                    return 0
                    ;;
                --port)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                -p)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --ttl)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --peer)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --key)
                    local oldifs
                    if [ -n "${IFS+x}" ]; then
                        oldifs="$IFS"
                    fi
                    IFS=$'\n'
                    COMPREPLY=($(compgen -f "${cur}"))
                    if [ -n "${oldifs+x}" ]; then
                        IFS="$oldifs"
                    fi
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o filenames
                    fi
                    return 0
                    ;;
                -k)
                    local oldifs
                    if [ -n "${IFS+x}" ]; then
                        oldifs="$IFS"
                    fi
                    IFS=$'\n'
                    COMPREPLY=($(compgen -f "${cur}"))
                    if [ -n "${oldifs+x}" ]; then
                        IFS="$oldifs"
                    fi
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o filenames
                    fi
                    return 0
                    ;;
                --name)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --state-dir)
                    COMPREPLY=()
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o plusdirs
                    fi
                    return 0
                    ;;
                --mtu)
                    COMPREPLY=()
                    [[ "${BASH_VERSINFO[0]}" -ge 4 ]] && compopt +o default +o bashdefault
                    return 0
                    ;;
                --interface)
                    COMPREPLY=("${cur}")
                    if [[ "${BASH_VERSINFO[0]}" -ge 4 ]]; then
                        compopt -o nospace
                    fi
                    return 0
                    ;;
                *)
                    COMPREPLY=()
                    ;;
            esac
            COMPREPLY=( $(compgen -W "${opts}" -- "${cur}") )
            return 0
            ;;
    esac
}

if [[ "${BASH_VERSINFO[0]}" -eq 4 && "${BASH_VERSINFO[1]}" -ge 4 || "${BASH_VERSINFO[0]}" -gt 4 ]]; then
    complete -F _makuo -o nosort -o bashdefault -o default makuo
else
    complete -F _makuo -o bashdefault -o default makuo
fi
