#!/bin/sh
# Entrypoint of the slurmd pod: start munged with the cluster's key, then become slurmd.
#
#   slurmd-entrypoint [slurmd arguments...]     e.g. -b -N elastic1 --conf-server ctl:6817
#
# The arguments go to `slurmd -D` unchanged. A containerised slurmd needs -b (the container
# reports the host's boot time, so without it slurmctld waits for a reboot until
# ResumeTimeout) and --conf-server (configless: the image carries no slurm.conf).
#
# Environment (defaults suit the image; tests on a plain host override them):
#   MUNGE_KEY_FILE       the cluster's munge key, mounted from a Secret [/etc/munge/munge.key]
#   MUNGE_SOCKET         munged's socket [/run/munge/munge.socket.2]. A configless slurmd 22.05
#                        fetches its config through this default path, whatever AuthInfo says.
#   MUNGE_STATE_DIR      private dir for munged's key copy, pid and seed files [/run/munged]
#   MUNGE_START_TIMEOUT  seconds to wait for munged to answer [10]
#   SLURMD_SPOOL_DIR     created before slurmd starts: the SlurmdSpoolDir of slurm.conf; %n
#                        stands for the node name ($SLURM_NODENAME) [/var/spool/slurmd]
#   SLURMD_LOG_FILE      the SlurmdLogFile of slurm.conf (%n: the node name): made a link to the
#                        container's log, so slurmstepd's messages (a job's "couldn't chdir",
#                        "Could not open stdout file") reach `kubectl logs` [/var/log/slurm/slurmd.log]
#   SLURMD_USERS_DIR     the site's users: `passwd` and `group` lines (the nodeset's `users`
#                        ConfigMap or Secret), added to the image's /etc/passwd and /etc/group
#                        so jobs resolve user and group names [/etc/slurm-k8s-bridge/users]
#   SLURMD_RDMA_NETWORKS set by the bridge for a nodeset with RDMA networks: one line if the
#                        pod's locked-memory limit would cap what Slurm propagates to jobs
#   SLURMD_CGROUPS       set (1) by the bridge for a nodeset with `cgroups: true`: slurmd's cgroup
#                        plugins will create a cgroup per job, so the controllers they use must
#                        be writable here (exit 6 or 7 otherwise)
#   SLURMD_CGROUP_ROOT   where the cgroup filesystems are mounted [/sys/fs/cgroup] (tests)
# Set by the bridge for a node with GPUs (bridge/resources.py, GpuGrant.env):
#   SLURMD_GPU_COUNT     GPUs the pod was granted, from the node's Gres [0: no GPU handling]
#   SLURMD_GRES          that Gres as Slurm states it, e.g. gpu:a100:4 (for messages)
#   SLURMD_GPU_VENDOR    nvidia (devices /dev/nvidiaN) or amd (/dev/dri/renderDN) [nvidia]
#   SLURMD_GPU_SHARING   none, time-slicing or mig [none]
#   SLURMD_DEV_DIR       where the devices are and the links go [/dev] (tests)
#
# Exit codes, each with one line on stderr: 2 munge key missing, unreadable or empty;
# 3 munge key writable by group or others; 4 munged did not start; 5 the pod's GPU devices
# do not match SLURMD_GPU_COUNT; 6 SLURMD_CGROUPS is set but a cgroup v1 controller slurmd's
# plugins use (freezer, cpuset, memory, devices) is missing or read-only (the pod is not
# privileged); 7 SLURMD_CGROUPS is set on a cgroup v2 host (not supported yet). Then slurmd's own.
#
# Lifetime: the image runs this script under tini (the container's PID 1, see the Dockerfile),
# which passes the pod's SIGTERM on to it. slurmd is exec'd, so from then on it gets that signal
# directly: before its handler is installed its default action ends it, after it slurmd leaves
# cleanly; either way the pod stops at once. munged is left running as slurmd's child: when
# tini's child exits the runtime tears down the container's PID namespace, munged included, so
# it never keeps the pod alive. Do not make this script PID 1 itself (a pod template's
# `command:` would): PID 1 ignores a signal it has no handler for. On a plain host there is no
# such namespace: start this script as a session leader (setsid) and signal the whole process
# group (kill -TERM -- -PID) to end munged with slurmd.
set -eu

prog=slurmd-entrypoint
key_file=${MUNGE_KEY_FILE:-/etc/munge/munge.key}
socket=${MUNGE_SOCKET:-/run/munge/munge.socket.2}
state_dir=${MUNGE_STATE_DIR:-/run/munged}
start_timeout=${MUNGE_START_TIMEOUT:-10}
spool_dir=${SLURMD_SPOOL_DIR:-/var/spool/slurmd}
secret_hint="mount the munge key Secret there (see rbac/munge-key-secret.example.yaml)"

die() {
	code=$1
	shift
	printf '%s: %s\n' "$prog" "$*" >&2
	exit "$code"
}

check_key() {
	[ -e "$key_file" ] || die 2 "munge key $key_file is missing: $secret_hint"
	[ -r "$key_file" ] || die 2 "munge key $key_file is not readable by uid $(id -u): $secret_hint"
	[ -s "$key_file" ] || die 2 "munge key $key_file is empty: $secret_hint"
	# A key others may write could have been replaced: refuse it rather than copy it.
	mode=$(stat -L -c '%a' "$key_file")
	if [ $((0$mode & 022)) -ne 0 ]; then
		die 3 "munge key $key_file has mode $mode, writable by group or others: use defaultMode 0400 on the Secret volume"
	fi
}

# munged accepts only a regular file owned by its own uid with no group/other bits. A Secret
# volume gives a symlink (munge.key -> ..data/munge.key), mode 0644 unless defaultMode says
# otherwise, and the owner the kubelet chooses; the volume is read-only, so nothing can be
# fixed in place. A private 0400 copy satisfies munged whatever the mount looks like, and
# readable-by-others on a read-only mount leaks nothing the pod's other users could not read.
copy_key() {
	umask 077
	mkdir -p "$state_dir"
	chmod 700 "$state_dir"
	rm -f "$state_dir/munge.key"
	cp "$key_file" "$state_dir/munge.key"
	chmod 400 "$state_dir/munge.key"
	umask 022
}

# kill -0 cannot tell: an exited munged stays a zombie until this shell waits for it.
munged_alive() {
	state=$(cut -d' ' -f3 "/proc/$munged_pid/stat" 2>/dev/null) || return 1
	[ -n "$state" ] && [ "$state" != Z ]
}

munge_answers() {
	munge -n -S "$socket" 2>/dev/null | unmunge -S "$socket" >/dev/null 2>&1
}

start_munged() {
	socket_dir=$(dirname "$socket")
	mkdir -p "$socket_dir"
	chmod 755 "$socket_dir" # munged refuses a socket dir others cannot traverse
	# In the foreground munged logs to stderr (the pod's log) and ignores --log-file.
	munged --foreground --key-file="$state_dir/munge.key" --socket="$socket" \
		--pid-file="$state_dir/munged.pid" --seed-file="$state_dir/munged.seed" &
	munged_pid=$!
	tries=$((start_timeout * 10))
	until munge_answers; do
		munged_alive || die 4 "munged exited at start: see its messages above"
		tries=$((tries - 1))
		if [ "$tries" -le 0 ]; then
			kill "$munged_pid" 2>/dev/null || true
			die 4 "munged did not answer on $socket within ${start_timeout}s"
		fi
		sleep 0.1
	done
}

# GPU linking (gpu_link) lives beside this script, shared with the DCGM job-map prolog and
# benchmarks/gpu_device_check.sh; in the image both are in /usr/local/lib/slurm-k8s-bridge.
for gpu_lib in "$(dirname "$0")/gpu-devices.sh" /usr/local/lib/slurm-k8s-bridge/gpu-devices.sh; do
	[ -r "$gpu_lib" ] && break
done
# shellcheck source=gpu-devices.sh
. "$gpu_lib"

# --- The researcher's view: users, locked memory, slurm.conf's own paths ---------------------

# NSS "files" reads /etc/passwd and /etc/group, so the site's lines are added there (no extra
# NSS module needed in the image). The image's own accounts win: a site line whose name or id
# the image already has is skipped, so root, slurm or munge can never be redefined by the list.
install_users() {
	users_dir=${SLURMD_USERS_DIR:-/etc/slurm-k8s-bridge/users}
	[ -d "$users_dir" ] || return 0
	users=$(add_entries "$users_dir/passwd" /etc/passwd 7)
	groups=$(add_entries "$users_dir/group" /etc/group 4)
	printf '%s: site users from %s: passwd %s; group %s\n' "$prog" "$users_dir" "$users" "$groups" >&2
}

# add_entries SOURCE TARGET FIELDS: appends SOURCE's well-formed lines (FIELDS colon-separated
# fields, a numeric id) whose name and id TARGET lacks; prints "N added, M skipped".
add_entries() {
	[ -r "$1" ] || { printf 'none (no %s)' "$1"; return 0; }
	awk -F: -v fields="$3" -v target="$2" '
		NR == FNR { name[$1] = 1; id[$3] = 1; next }
		NF == fields && $3 ~ /^[0-9]+$/ && !($1 in name) && !($3 in id) {
			print >> target; name[$1] = 1; id[$3] = 1; added++; next
		}
		/./ { skipped++ }
		END { printf "%d added, %d skipped", added, skipped }
	' "$2" "$1"
}

# slurmstepd gives each job the submit host's RLIMIT_MEMLOCK (PropagateResourceLimits), but a
# process cannot raise its hard limit without CAP_SYS_RESOURCE, which the pod does not get:
# with the container runtime's default (8 MiB, or 64 KiB on older kernels) RDMA verbs fail to
# register memory. The soft limit is raised to the hard one; a hard limit left is said once.
check_memlock() {
	[ -n "${SLURMD_RDMA_NETWORKS:-}" ] || return 0
	hard=$(ulimit -H -l)
	[ "$hard" = unlimited ] && { ulimit -S -l unlimited; return 0; }
	ulimit -S -l "$hard" 2>/dev/null || true
	printf '%s: RDMA networks %s but locked memory is limited to %s KiB: jobs cannot pin more; set LimitMEMLOCK=infinity for the container runtime (docs/hpc-nodes.md#locked-memory)\n' \
		"$prog" "$SLURMD_RDMA_NETWORKS" "$hard" >&2
}

# slurmd's cgroup plugins (proctrack/cgroup, task/cgroup) create a cgroup per job under each
# controller's mount. Where they cannot, slurmd still registers, and every job then fails with
# "Plugin initialization failed" while Slurm shows it COMPLETED 0:0: refuse to start instead.
# A directory made and removed is the test: a read-only mount, a missing capability or a
# controller that is not mounted all fail it, as they would fail slurmd.
check_cgroups() {
	[ -n "${SLURMD_CGROUPS:-}" ] || return 0
	root=${SLURMD_CGROUP_ROOT:-/sys/fs/cgroup}
	if [ -e "$root/cgroup.controllers" ]; then
		die 7 "cgroups: true but $root is cgroup v2, which this image does not support yet: use ProctrackType=proctrack/linuxproc and no task/cgroup for this nodeset (docs/hpc-nodes.md#cgroups)"
	fi
	for controller in freezer cpuset memory devices; do
		probe="$root/$controller/slurm-k8s-bridge-probe.$$"
		if ! mkdir "$probe" 2>/dev/null; then
			die 6 "cgroups: true but $root/$controller is $(cgroup_problem "$root/$controller"): slurmd's cgroup plugins would fail every job; run the pod with securityContext privileged: true (docs/hpc-nodes.md#cgroups)"
		fi
		rmdir "$probe"
	done
}

cgroup_problem() {
	[ -d "$1" ] || { echo "not mounted"; return; }
	grep -qs " $1 ro[, ]" /proc/self/mountinfo && echo "read-only" || echo "not writable"
}

# The node's private /tmp is an emptyDir, which the kubelet makes 0777 without the sticky bit:
# on a node that several users share, any of them could delete another's files (and munged
# refuses a socket below such a directory). /tmp's usual mode, 1777, fixes both.
share_tmp() {
	if [ -d /tmp ] && [ -w /tmp ]; then chmod 1777 /tmp; fi
}

# slurm.conf is one file for every node (configless): paths it names per node (%n) are made
# here, and a munge socket it names elsewhere (AuthInfo=socket=...) is also reachable at the
# default path, which a configless slurmd 22.05 uses before it has fetched slurm.conf.
prepare_paths() {
	spool_dir=$(printf '%s' "$spool_dir" | sed "s/%n/${SLURM_NODENAME:-%n}/g")
	mkdir -p "$spool_dir"
	link_log
	default_socket=/run/munge/munge.socket.2
	if [ "$socket" != "$default_socket" ] && [ ! -e "$default_socket" ]; then
		mkdir -p /run/munge
		ln -s "$socket" "$default_socket"
	fi
}

# slurmd logs to its stderr (the pod's log) when it cannot open SlurmdLogFile, but slurmstepd,
# which runs each job, has no stderr: its errors about a job go only to that file. Pointed at
# slurmd's own stderr (this script's: slurmd takes its PID with exec), both reach `kubectl logs`.
# Only in the image's container (tini, PID 1, is this script's parent) and only where the file
# is not there already: a log directory the site mounts keeps its files.
link_log() {
	log_file=$(printf '%s' "${SLURMD_LOG_FILE:-/var/log/slurm/slurmd.log}" | sed "s/%n/${SLURM_NODENAME:-%n}/g")
	[ -e "$log_file" ] || [ -L "$log_file" ] || [ "$PPID" != 1 ] && return 0
	mkdir -p "$(dirname "$log_file")"
	ln -s "/proc/$$/fd/2" "$log_file"
}

check_cgroups
check_key
gpu_link || exit $?
install_users
check_memlock
share_tmp
copy_key
start_munged
prepare_paths
exec slurmd -D "$@"
