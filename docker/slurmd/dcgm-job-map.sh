#!/bin/sh
# Slurm Prolog and Epilog of a slurmd pod: DCGM's HPC job mapping, so dcgm-exporter labels the
# metrics of a job's GPUs with hpc_job="<job id>" (DCGM_FI_DEV_GPU_UTIL{hpc_job="1234"}).
#
#   slurm.conf:  Prolog=/usr/local/lib/slurm-k8s-bridge/dcgm-job-map.sh
#                Epilog=/usr/local/lib/slurm-k8s-bridge/dcgm-job-map.sh
#   by hand:     dcgm-job-map.sh add|remove      (what prolog|epilog do)
#
# dcgm-exporter --hpc-job-mapping-dir DIR reads DIR/<GPU id>, one job id a line, for every file
# whose name is a number; it skips directories and other names. Here DIR is a hostPath the
# exporter's DaemonSet mounts too, shared by every slurmd pod on the host, so:
#   DIR/<host index>           what the exporter reads (see gpu-devices.sh for the index)
#   DIR/.jobs/<index>/<job>@<node>   who holds the GPU: a GPU shared by pods (MIG, time-slicing)
#                              holds several jobs, and one job on two such pods is there twice
#   DIR/.lock                  flock: pods change DIR one at a time
# Each change rewrites DIR/<index> from .jobs/<index> and renames it into place, so the exporter
# never reads half a file; a GPU with no job keeps an empty file rather than none, so a file
# never vanishes between the exporter's listing and its read.
#
# slurmd runs this as root with Slurm's variables only (no PATH, none of the pod's): SLURM_JOB_ID,
# SLURMD_NODENAME, SLURM_SCRIPT_CONTEXT (prolog_slurmd / epilog_slurmd) and SLURM_JOB_GPUS, the
# job's GPUs on this node as Slurm's indices (gres.conf order: slurm-gpuN). The epilog removes the
# job's marks of this node wherever they are, so it does not depend on what Slurm tells it.
#
# It never fails a job: a failing Prolog would set the node DOWN and requeue the job, for the sake
# of a label. Problems are one line on stderr (slurmd's log at debug level), exit 0. Without DIR
# (a pod of a nodeset without dcgm_job_mapping_dir, or a static node) it does nothing, so the
# same Prolog= line serves every node of the cluster.
#
# Environment for tests: DCGM_JOB_MAPPING_DIR [/run/slurm-k8s-bridge/dcgm-job-map], and the
# device paths of gpu-devices.sh.
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
LC_ALL=C # glob order is byte order
export PATH LC_ALL
umask 022

prog=dcgm-job-map
map_dir=${DCGM_JOB_MAPPING_DIR:-/run/slurm-k8s-bridge/dcgm-job-map}
node=${SLURMD_NODENAME:-$(hostname)}

say() { printf '%s: %s\n' "$prog" "$*" >&2; }

here=$(dirname "$0")
for gpu_lib in "$here/gpu-devices.sh" /usr/local/lib/slurm-k8s-bridge/gpu-devices.sh; do
	[ -r "$gpu_lib" ] && break
done
# A "." of a missing file would end the shell with an error: the Prolog would fail.
[ -r "$gpu_lib" ] || {
	say "no gpu-devices.sh beside $0: nothing mapped"
	exit 0
}
# shellcheck source=gpu-devices.sh
. "$gpu_lib"

host_index_of() { # host index of Slurm's GPU index $1
	device=$(gpu_slurm_device "$1") || {
		say "job ${SLURM_JOB_ID}: no device for Slurm GPU $1 (no $(gpu_dev_dir)/slurm-gpu$1)"
		return 1
	}
	minor=$(gpu_minor "$device") || {
		say "job ${SLURM_JOB_ID}: $device is not a character device"
		return 1
	}
	gpu_host_index "$minor" || {
		say "job ${SLURM_JOB_ID}: the GPU of $device (minor $minor) is not among the host's GPUs"
		return 1
	}
}

job_indices() { # the host indices of the job's GPUs on this node
	for gpu in $(printf '%s' "${SLURM_JOB_GPUS:-}" | tr ',' ' '); do
		case $gpu in *[!0-9]* | '') say "job ${SLURM_JOB_ID}: SLURM_JOB_GPUS has '$gpu', not an index" ;; *) host_index_of "$gpu" ;; esac
	done
}

publish() { # rewrite DIR/<index> from its holders, atomically (umask 022: readable by the exporter)
	# A job's marks sort together ("13@a" "13@b"), so each id is written once. Builtins only but
	# mv: the Prolog delays the job's first step.
	tmp="$map_dir/.$1.$$" last=
	for mark in "$map_dir/.jobs/$1"/*@*; do
		[ -e "$mark" ] || continue
		mark=${mark##*/}
		[ "${mark%@*}" = "$last" ] || printf '%s\n' "${mark%@*}"
		last=${mark%@*}
	done >"$tmp" && mv -f "$tmp" "$map_dir/$1"
}

add() {
	for index in $(job_indices); do
		[ -d "$map_dir/.jobs/$index" ] || mkdir -p "$map_dir/.jobs/$index" || return 1
		: >"$map_dir/.jobs/$index/${SLURM_JOB_ID}@$node" && publish "$index" || return 1
	done
}

remove() { # only this job's marks from this node: another pod may run a job of that number
	for mark in "$map_dir"/.jobs/*/"${SLURM_JOB_ID}@$node"; do
		[ -e "$mark" ] || continue
		index=${mark%/*}
		rm -f "$mark" && publish "${index##*/}" || return 1
	done
}

case ${1:-${SLURM_SCRIPT_CONTEXT:-$(basename "$0")}} in
add | prolog*) action=add ;;
remove | epilog*) action=remove ;;
*)
	say "run as Prolog or Epilog (SLURM_SCRIPT_CONTEXT), or with add|remove"
	exit 0
	;;
esac
[ -d "$map_dir" ] || exit 0
[ -w "$map_dir" ] || {
	say "$map_dir is not writable: nothing mapped"
	exit 0
}
case ${SLURM_JOB_ID:-} in
'' | *[!0-9]*)
	say "SLURM_JOB_ID '${SLURM_JOB_ID:-}' is not a job id: nothing mapped"
	exit 0
	;;
esac

if command -v flock >/dev/null 2>&1; then
	exec 9>>"$map_dir/.lock" && flock -w 10 9 || say "job $SLURM_JOB_ID: $map_dir/.lock busy for 10 s: going on without it"
fi
$action || say "job $SLURM_JOB_ID: $action incomplete in $map_dir"
exit 0
