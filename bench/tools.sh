# shellcheck shell=bash
# The tools bench/run compares (sourced by bench/run, which holds the helpers, the cluster and
# the measurement they use). Not a program of its own.

# ------------------------------------------------------------------ tools
# Each tool defines tool_X_run WL N (timed: returns when every receiver has the files),
# and optionally tool_X_start N / tool_X_stop (once per tool and N, untimed),
# tool_X_prepare WL N / tool_X_finish (around every run, untimed), tool_X_version.
# DUR (yes|no) tells the tools that have a durability step which variant to run.

# ---- raw-mcast: the wire limit of the run (examples/rawmc.rs): the sender holds every byte
# in memory and its socket open before the clock starts; the go is a write to a FIFO.
RAW_RCV=()
RAW_SND=""
tool_raw_mcast_version() { echo "raw-mcast (examples/rawmc.rs, $("$RAWMC" 2>&1 | sed -n 's/^(build \(.*\))$/build \1/p'); UDP GSO 44 x 1472 B per send, GRO receive, data loaded before the clock)"; }
tool_raw_mcast_prepare() {
  local wl=$1 n=$2 i p
  RAW_RCV=()
  for i in $(seq 1 "$n"); do
    rm -f "$W/logs/raw$i.ready"
    spawn p "$PFX$i" rcv "$W/logs/raw$i.json" "$RAWMC" recv "$MC_RAW" "$RAW_PORT" "$(ip_of "$i")" \
      "$W/logs/raw$i.ready" "$(rcv_dir "$i")" "$W/src/$wl.layout" 5
    RAW_RCV+=("$p")
  done
  for i in $(seq 1 "$n"); do for _ in $(seq 200); do [[ -e $W/logs/raw$i.ready ]] && break; sleep 0.05; done; done
  rm -f "$W/logs/raw0.ready" "$W/logs/raw.go"; mkfifo "$W/logs/raw.go"
  SPAWN_OUT=$W/logs/raw0.json spawn RAW_SND "${PFX}0" snd "$W/logs/run.log" timeout -k 5 "$TIMEOUT" "$RAWMC" send "$MC_RAW" "$RAW_PORT" "$(ip_of 0)" \
    "$(src_root "$wl")" "$W/src/$wl.layout" "$W/logs/raw0.ready" "$W/logs/raw.go"
  for _ in $(seq 600); do [[ -e $W/logs/raw0.ready ]] && break; alive "$RAW_SND" || break; sleep 0.05; done
  [[ -e $W/logs/raw0.ready ]] || log "  raw-mcast: the sender is not ready: $(tail -2 "$W/logs/run.log" | tr '\n' ' ')"
}
tool_raw_mcast_run() {
  local wl=$1 n=$2 p rc=0 i=0 fd
  # the go: a read-write open never blocks (whatever the sender's state), and held until the
  # sender is done, the sender's blocking open returns and finds the byte whenever it comes
  exec {fd}<>"$W/logs/raw.go"; echo go >&"$fd"
  for p in "${RAW_RCV[@]}"; do i=$((i + 1)); wait_pid "$p" || { rc=1; RUN_NOTE+="$PFX$i $(cat "$W/logs/raw$i.json" 2>/dev/null) "; }; done
  RUN_END=$(now)     # every receiver has its files in place (or gave up)
  wait_pid "$RAW_SND" || { rc=1; RUN_NOTE+="sender: $(tail -2 "$W/logs/run.log" | tr '\n' ' ') "; }
  exec {fd}>&-
  RAW_SND=""
  RAW_RCV=()
  return $rc
}
tool_raw_mcast_finish() {
  [[ -n $RAW_SND ]] && stop_pid "$RAW_SND"
  RAW_SND=""
  # the sender's own account of the timed window (payload_mbit_s: how fast it pushed)
  [[ -s $W/logs/raw0.json ]] && RUN_EXTRA="\"raw_sender\": $(head -1 "$W/logs/raw0.json")"
  rm -f "$W/logs/raw.go"
}

# ---- rsync: a loop over the receivers (seq) or all at once (par), to rsync daemons
RSYNCD_PIDS=()
tool_rsync_seq_version() { rsync --version 2>&1 | sed -n 1p; }
tool_rsync_par_version() { tool_rsync_seq_version; }
rsync_start() {
  local n=$1 i c p
  for i in $(seq 1 "$n"); do
    c=$W/logs/rsyncd$i.conf
    cat >"$c" <<EOF
uid = root
gid = root
use chroot = no
max connections = 0
reverse lookup = no
pid file = $W/logs/rsyncd$i.pid
log file = $W/logs/rsyncd$i.log
[dst]
path = $(rcv_dir "$i")
read only = false
EOF
    rm -f "$W/logs/rsyncd$i.pid"
    spawn p "$PFX$i" rcv "$W/logs/rsyncd$i.out" rsync --daemon --no-detach --config="$c" --address="$(ip_of "$i")" --port=873
    RSYNCD_PIDS+=("$p")
  done
  for i in $(seq 1 "$n"); do
    for _ in $(seq 100); do ip netns exec "${PFX}0" rsync "rsync://$(ip_of "$i")/" >/dev/null 2>&1 && break; sleep 0.05; done
  done
}
rsync_stop() { local p; for p in "${RSYNCD_PIDS[@]}"; do stop_pid "$p"; done; RSYNCD_PIDS=(); }
tool_rsync_seq_start() { rsync_start "$@"; }
tool_rsync_seq_stop() { rsync_stop; }
tool_rsync_par_start() { rsync_start "$@"; }
tool_rsync_par_stop() { rsync_stop; }
rsync_args() {
  local wl=$1 n=$2 i
  RSYNC_ARGS=(-a)
  [[ $DUR == yes ]] && RSYNC_ARGS+=(--fsync)
  RSYNC_ARGS+=("$(src_root "$wl")/$(src_item "$wl")")
  RSYNC_TARGETS=()
  for i in $(seq 1 "$n"); do RSYNC_TARGETS+=("rsync://$(ip_of "$i")/dst/"); done
}
tool_rsync_seq_run() {   # for h in hosts; do rsync -a SRC h::dst/; done
  local p; rsync_args "$@"
  # shellcheck disable=SC2016
  spawn p "${PFX}0" snd "$W/logs/run.log" timeout -k 5 "$TIMEOUT" bash -c \
    'n=$1; shift; a=("${@:1:n}"); shift "$n"; for t in "$@"; do rsync "${a[@]}" "$t" || exit 1; done' _ \
    "${#RSYNC_ARGS[@]}" "${RSYNC_ARGS[@]}" "${RSYNC_TARGETS[@]}"
  wait_pid "$p"
}
tool_rsync_par_run() {   # all receivers at once
  local p; rsync_args "$@"
  # shellcheck disable=SC2016
  spawn p "${PFX}0" snd "$W/logs/run.log" timeout -k 5 "$TIMEOUT" bash -c \
    'n=$1; shift; a=("${@:1:n}"); shift "$n"; ps=(); for t in "$@"; do rsync "${a[@]}" "$t" & ps+=($!); done; rc=0; for q in "${ps[@]}"; do wait $q || rc=1; done; exit $rc' _ \
    "${#RSYNC_ARGS[@]}" "${RSYNC_ARGS[@]}" "${RSYNC_TARGETS[@]}"
  wait_pid "$p"
}

# ---- uftp (from peers.sh): closed group, sync mode (-z), rate 90 % of the link
UFTPD_PIDS=()
tool_uftp_version() { dpkg-query -W -f='uftp ${Version} (Debian package)' uftp 2>/dev/null || echo "uftp (version unknown)"; }
tool_uftp_start() {
  local n=$1 i p
  for i in $(seq 1 "$n"); do
    spawn p "$PFX$i" rcv "$W/logs/uftpd$i.log" uftpd -d -q -x 1 -I "$IFN" -M "$MC_UFTP_PUB" -p 1044 -B "$BUF" -D "$(rcv_dir "$i")"
    UFTPD_PIDS+=("$p")
  done
  for i in $(seq 1 "$n"); do
    for _ in $(seq 100); do ip netns exec "$PFX$i" grep -q ':0414 ' /proc/net/udp 2>/dev/null && break; sleep 0.05; done
  done
  sleep 0.2
}
tool_uftp_stop() { local p; for p in "${UFTPD_PIDS[@]}"; do stop_pid "$p"; done; UFTPD_PIDS=(); }
tool_uftp_run() {
  local wl=$1 n=$2 p ids="" i rate=-1
  ((LINK_MBIT > 0)) && rate=$((LINK_MBIT * 900))
  for i in $(seq 1 "$n"); do ids+="${ids:+,}$(uftp_id "$i")"; done
  spawn p "${PFX}0" snd "$W/logs/run.log" timeout -k 5 "$TIMEOUT" uftp -x 1 -Y none -I "$IFN" -M "$MC_UFTP_PUB" -P "$MC_UFTP_PRIV" \
    -p 1044 -t 1 -R "$rate" -B "$BUF" -b 1300 -z -H "$ids" "$(src_root "$wl")/$(src_item "$wl")"
  wait_pid "$p"
}

# ---- udpcast (from peers.sh): one stream (a file, or a tar of the tree) to all receivers
UDPR_PIDS=()
UDPCAST_NET=(--interface "$IFN" --portbase 9000 --mcast-rdv-address "$MC_UDPCAST_RDV")
tool_udpcast_version() { dpkg-query -W -f='udpcast ${Version} (Debian package)' udpcast 2>/dev/null || echo "udpcast (version unknown)"; }
tool_udpcast_prepare() {
  local wl=$1 n=$2 i p d
  UDPR_PIDS=()
  for i in $(seq 1 "$n"); do
    d=$(rcv_dir "$i")
    if [[ $wl == big ]]; then
      spawn p "$PFX$i" rcv "$W/logs/udpr$i.log" timeout -k 5 "$TIMEOUT" udp-receiver "${UDPCAST_NET[@]}" --nokbd \
        --exit-wait 100 --start-timeout 60 --file "$d/big.bin"
    else
      # shellcheck disable=SC2016
      spawn p "$PFX$i" rcv "$W/logs/udpr$i.log" timeout -k 5 "$TIMEOUT" bash -o pipefail -c \
        'd=$1; shift; udp-receiver "$@" | tar -C "$d" -xf -' _ "$d" "${UDPCAST_NET[@]}" --nokbd --exit-wait 100 --start-timeout 60
    fi
    UDPR_PIDS+=("$p")
  done
  for i in $(seq 1 "$n"); do
    for _ in $(seq 100); do ip netns exec "$PFX$i" grep -q ':2328 ' /proc/net/udp 2>/dev/null && break; sleep 0.05; done
  done
}
tool_udpcast_run() {
  local wl=$1 n=$2 p rc=0 q
  local snd=(udp-sender "${UDPCAST_NET[@]}" --mcast-data-address "$MC_UDPCAST_DATA" --ttl 1
    --min-receivers "$n" --max-wait 30 --rexmit-hello-interval 20 --nokbd --no-progress --full-duplex)
  if [[ $wl == big ]]; then
    spawn p "${PFX}0" snd "$W/logs/run.log" timeout -k 5 "$TIMEOUT" "${snd[@]}" --file "$(src_root big)/big.bin"
  else
    # shellcheck disable=SC2016
    spawn p "${PFX}0" snd "$W/logs/run.log" timeout -k 5 "$TIMEOUT" bash -o pipefail -c \
      'd=$1; shift; tar -C "$d" -cf - tree | "$@"' _ "$(src_root "$wl")" "${snd[@]}"
  fi
  wait_pid "$p" || rc=$?
  for q in "${UDPR_PIDS[@]}"; do wait_pid "$q" || rc=$?; done
  UDPR_PIDS=()
  return $rc
}

# ---- makuo: receiver daemons in mb1..mbN, fresh state (and key) for every run (untimed);
# makuo-direct pushes with a short-lived sender, makuo-daemon through a sender daemon's console.
# KEY (yes|no) and ATOMIC (1|0) say whether this variant runs keyed and atomic; MULTICAST is run-wide.
MAKUO_PIDS=()
MAKUO_SND_PID=""
MAKUO_N=0
tool_makuo_direct_version() { echo "$MAKUO_VERSION"; }
tool_makuo_daemon_version() { echo "$MAKUO_VERSION"; }
makuo_fsync_flag() { [[ $DUR == no ]] && echo --no-fsync; return 0; }
makuo_new_key() {   # a fresh key per run, readable by root only
  rm -f "$W/state/cluster.key"
  [[ $KEY == yes ]] || return 0
  "$MAKUO" keygen "$W/state/cluster.key" >/dev/null 2>>"$W/logs/keygen.log" || die "makuo keygen failed: $(tail -1 "$W/logs/keygen.log")"
  chmod 0600 "$W/state/cluster.key"
}
makuo_key_args() {   # makuo_key_args daemon|sync: -k KEY, --insecure (when it exists) or nothing
  if [[ $KEY == yes ]]; then echo "-k $W/state/cluster.key"
  elif [[ $1 == daemon ]] && ((MK_INSECURE_D)); then echo --insecure
  elif [[ $1 == sync ]] && ((MK_INSECURE_S)); then echo --insecure
  fi
  return 0
}
makuo_peer_args() {   # without multicast: every node of this run (a node ignores its own address)
  ((MULTICAST)) && return 0
  local i; for i in $(seq 0 "$MAKUO_N"); do printf -- '--peer %s ' "$(ip_of "$i")"; done
}
makuo_daemon_args() {   # makuo_daemon_args I BASEDIR
  local i=$1
  MAKUO_ARGS=(daemon -n -b "$2" -m "$MC_MAKUO" -p "$MAKUO_PORT" -i "$(ip_of "$i")" --name "r$i"
    --state-dir "$W/state/r$i" -P "$MAKUO_CONSOLE")
  [[ $DUR == no ]] && MAKUO_ARGS+=(--no-fsync)
  ((RELAY)) && [[ " $MAKUO_DAEMON_OPTS " != *" --relay "* ]] && MAKUO_ARGS+=(--relay)
  local extra
  read -ra extra <<<"$(makuo_key_args daemon) $(makuo_peer_args) $MAKUO_DAEMON_OPTS"; MAKUO_ARGS+=("${extra[@]}")
  return 0
}
makuo_port_bound() {   # makuo_port_bound NS PORT PROTO
  local hex; hex=$(printf ':%04X ' "$2")
  ip netns exec "$1" grep -q "$hex" "/proc/net/$3" 2>/dev/null
}
makuo_start_receivers() {
  local n=$1 i p
  MAKUO_PIDS=()
  MAKUO_N=$n
  makuo_new_key
  for i in $(seq 1 "$n"); do
    rm -rf "$W/state/r$i"; mkdir -p "$W/state/r$i"
    makuo_daemon_args "$i" "$(rcv_dir "$i")"
    spawn p "$PFX$i" rcv "$W/logs/makuod$i.log" "$MAKUO" "${MAKUO_ARGS[@]}"
    MAKUO_PIDS+=("$p")
  done
  for i in $(seq 1 "$n"); do
    for _ in $(seq 200); do makuo_port_bound "$PFX$i" "$MAKUO_PORT" udp && break; sleep 0.05; done
    makuo_port_bound "$PFX$i" "$MAKUO_PORT" udp || { log "makuo daemon in $PFX$i did not bind UDP $MAKUO_PORT"; tail -5 "$W/logs/makuod$i.log" >&2; }
  done
}
makuo_stop_all() {
  local p
  [[ -n $MAKUO_SND_PID ]] && stop_pid "$MAKUO_SND_PID"
  MAKUO_SND_PID=""
  for p in "${MAKUO_PIDS[@]}"; do stop_pid "$p"; done
  MAKUO_PIDS=()
}
makuo_check_daemons() {   # a daemon that died during the run makes the run fail
  local i=0 p rc=0
  for p in "${MAKUO_PIDS[@]}"; do
    i=$((i + 1))
    alive "$p" || { RUN_NOTE+="makuo daemon in $PFX$i died: $(tail -2 "$W/logs/makuod$i.log" | tr '\n' ' ') "; rc=1; }
  done
  return $rc
}
makuo_check_result() {   # the push's --json result must list r1..rN, every one ok, exit 0
  local r
  r=$(pyh check-result "$W/logs/result.json" "$1")
  [[ $r == ok ]] && return 0
  RUN_NOTE+="makuo --json: $r; "
  return 1
}
makuo_push_opts() {   # what every push gets besides its connection flags
  local o; o="$(makuo_fsync_flag)"
  ((ATOMIC)) && o+=" --atomic"
  ((RELAY)) && [[ " $MAKUO_SYNC_OPTS " != *" --relay "* ]] && o+=" --relay"
  echo "$o $MAKUO_SYNC_OPTS"
}
tool_makuo_direct_prepare() {
  local n=$2 i=0
  makuo_start_receivers "$n"
  ((n >= 2)) || return 0
  # steady state, as for makuo-daemon: the receivers know each other (a receiver deaf to the
  # group whose join went out before the others listened is heard only from a repeated join
  # or its next heartbeat on), so the front end learns every member from the first answers; r$n's
  # own line (STATE self) is not one of the others
  for _ in $(seq 100); do
    i=$(ip netns exec "$PFX$n" "$MAKUO" members --console "127.0.0.1:$MAKUO_CONSOLE" 2>/dev/null | awk '/^r[1-9][0-9]* / && $3 != "self"' | wc -l)
    ((i >= n - 1)) && break
    sleep 0.1
  done
  ((i >= n - 1)) || log "  makuo-direct: r$n sees $i of the $((n - 1)) other receivers before the push"
}
tool_makuo_direct_finish() { makuo_stop_all; }
tool_makuo_direct_run() {
  local wl=$1 n=$2 p rc=0
  rm -rf "$W/state/r0" "$W/logs/result.json"; mkdir -p "$W/state/r0"
  # shellcheck disable=SC2046
  SPAWN_OUT=$W/logs/result.json spawn p "${PFX}0" snd "$W/logs/run.log" timeout -k 5 "$TIMEOUT" "$MAKUO" sync --direct -b "$(src_root "$wl")" \
    -m "$MC_MAKUO" -p "$MAKUO_PORT" --interface "$(ip_of 0)" --name r0 --state-dir "$W/state/r0" --json \
    $(makuo_key_args sync) $(makuo_peer_args) $(makuo_push_opts) -r "$(src_item "$wl")"
  wait_pid "$p" || rc=$?
  RUN_END=$(now)     # sync returns once every member reported its files in place
  makuo_check_result "$n" || { ((rc)) || rc=1; }
  makuo_check_daemons || rc=1
  return $rc
}
tool_makuo_daemon_prepare() {
  local wl=$1 n=$2 i
  makuo_start_receivers "$n"
  rm -rf "$W/state/r0"; mkdir -p "$W/state/r0"
  makuo_daemon_args 0 "$(src_root "$wl")"
  spawn MAKUO_SND_PID "${PFX}0" snd "$W/logs/makuod0.log" "$MAKUO" "${MAKUO_ARGS[@]}"
  for _ in $(seq 200); do makuo_port_bound "${PFX}0" "$MAKUO_CONSOLE" tcp && break; sleep 0.05; done
  # steady state: wait until the sender's daemon lists every receiver as a member
  for _ in $(seq 100); do
    i=$(ip netns exec "${PFX}0" "$MAKUO" members --console "127.0.0.1:$MAKUO_CONSOLE" 2>/dev/null | grep -cE '^r[1-9][0-9]* ' || true)
    ((i >= n)) && break
    sleep 0.1
  done
  ((i >= n)) || log "  makuo-daemon: the sender daemon sees $i of $n receivers before the push"
}
tool_makuo_daemon_finish() { makuo_stop_all; }
tool_makuo_daemon_run() {
  local wl=$1 n=$2 p rc=0
  rm -f "$W/logs/result.json"
  # shellcheck disable=SC2046
  SPAWN_OUT=$W/logs/result.json spawn p "${PFX}0" snd "$W/logs/run.log" timeout -k 5 "$TIMEOUT" "$MAKUO" sync --console "127.0.0.1:$MAKUO_CONSOLE" \
    --json $(makuo_push_opts) -r "$(src_item "$wl")"
  wait_pid "$p" || rc=$?
  RUN_END=$(now)     # sync returns once every member reported its files in place
  makuo_check_result "$n" || { ((rc)) || rc=1; }
  alive "$MAKUO_SND_PID" || { RUN_NOTE+="sender daemon died: $(tail -2 "$W/logs/makuod0.log" | tr '\n' ' ') "; rc=1; }
  makuo_check_daemons || rc=1
  return $rc
}

has_durability() { case $1 in makuo-*|rsync-*) return 0 ;; *) return 1 ;; esac; }
