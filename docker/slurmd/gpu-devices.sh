# The GPUs of a slurmd pod: sourced (POSIX sh) by the entrypoint, the DCGM job-map prolog/epilog
# (dcgm-job-map.sh) and benchmarks/gpu_device_check.sh, so all three read the devices one way.
#
# Environment (defaults suit the image; tests and the device check point them elsewhere):
#   SLURMD_DEV_DIR        where the devices are and the slurm-gpuN links go [/dev]
#   SLURMD_GPU_PROC_DIR   the NVIDIA driver's per-GPU directories [/proc/driver/nvidia/gpus]
#   SLURMD_GPU_PCI_DIR    the PCI devices the nvidia driver drives [/sys/bus/pci/drivers/nvidia]
#
# Three numbers name one GPU, and they need not agree:
#   Slurm's index   the N of /dev/slurm-gpuN: the order of gres.conf's File= list, which Slurm
#                   hands the prolog in SLURM_JOB_GPUS;
#   the minor       of the device node /dev/nvidia<minor> (what the device plugin passes through);
#   the host index  NVML's index on the host, which nvidia-smi shows and which DCGM takes as its
#                   GPU id at start ("gpuId == index == nvmlIndex"), so dcgm-exporter's gpu label
#                   and its HPC job-mapping file names are this one.
# NVML numbers GPUs in PCI bus order, and documents no tie between its index and the minor (the
# driver gives minors in probe order), so the host index is found from the minor's PCI address.

gpu_dev_dir() { printf '%s' "${SLURMD_DEV_DIR:-/dev}"; }

gpu_existing() { # the paths a glob matched, in numeric order (nvidia2 before nvidia10)
	for path in "$@"; do
		[ -e "$path" ] && printf '%s\n' "$path"
	done | sort -V
}

gpu_devices() { # the GPU device nodes the pod was given, one path a line
	dev=$(gpu_dev_dir)
	case ${SLURMD_GPU_VENDOR:-nvidia} in
	amd) gpu_existing "$dev"/dri/renderD[0-9]* ;;
	*) gpu_existing "$dev"/nvidia[0-9]* ;; # not nvidiactl, nvidia-uvm...
	esac
}

# The device plugin hands a container its GPUs under their host numbers (e.g. /dev/nvidia3
# and /dev/nvidia5), which differ from pod to pod; gres.conf needs one name for all pods of a
# node line. So the granted devices are linked as slurm-gpu0..N-1, in PCI order (gpu_pci_order), and the
# site's gres.conf says e.g. File=/dev/slurm-gpu[0-3]. A pod seeing more or fewer GPUs than
# Slurm will hand out must not register: jobs would get GPUs the pod does not have.
# MIG slices are not /dev/nvidiaN devices (Slurm finds them with AutoDetect=nvml): skipped.
# Returns 5 with one line on stderr on a count mismatch.
gpu_link() {
	count=${SLURMD_GPU_COUNT:-0}
	[ "$count" -gt 0 ] && [ "${SLURMD_GPU_SHARING:-none}" != mig ] || return 0
	dev=$(gpu_dev_dir)
	devices=$(gpu_devices)
	found=$(printf '%s' "$devices" | grep -c . || true)
	# A privileged container (cgroups: true) sees every GPU of the host: then the grant is what
	# the device plugin put in NVIDIA_VISIBLE_DEVICES.
	if [ "$found" -gt "$count" ] && granted=$(gpu_granted); then
		devices=$granted
		found=$(printf '%s' "$devices" | grep -c . || true)
	fi
	if [ "$found" -ne "$count" ]; then
		printf '%s: node has Gres %s but the pod sees %s GPU device(s) in %s: check the pod'"'"'s GPU resource and the device plugin\n' \
			"${prog:-slurmd-entrypoint}" "${SLURMD_GRES:-gpu:$count}" "$found" "$dev" >&2
		return 5
	fi
	devices=$(gpu_pci_order $devices)
	i=0
	for device in $devices; do
		ln -sfn "$device" "$dev/slurm-gpu$i"
		i=$((i + 1))
	done
}

# Slurm hands a job CUDA_VISIBLE_DEVICES as the indices of gres.conf's File= list, and CUDA
# numbers the GPUs a pod sees in PCI bus order (as NVML and Slurm's AutoDetect do): so the
# links follow PCI order, which the driver's minors need not. Without the driver's files
# (fake devices), the minors' order stands.
gpu_pci_order() { # the device nodes given, in the PCI order of their GPUs
	ordered=
	for device in "$@"; do
		minor=$(gpu_minor "$device") && bus=$(gpu_bus_id "$minor") || {
			printf '%s\n' "$@"
			return 0
		}
		ordered="$ordered$bus $device
"
	done
	printf '%s' "$ordered" | sort | while read -r _bus device; do printf '%s\n' "$device"; done
}

gpu_info_field() { # the value of field $2 ("Device Minor", "GPU UUID") in driver file $1
	[ -r "$1" ] || return 1
	while IFS=: read -r key value; do
		[ "$key" = "$2" ] || continue
		set -- $value
		printf '%s\n' "${1:-}"
		return 0
	done <"$1"
	return 1
}

gpu_granted() { # the device nodes NVIDIA_VISIBLE_DEVICES names (GPU UUIDs or host indices), in minor order
	case ${NVIDIA_VISIBLE_DEVICES:-} in "" | all | none | void) return 1 ;; esac
	dev=$(gpu_dev_dir)
	proc=${SLURMD_GPU_PROC_DIR:-/proc/driver/nvidia/gpus}
	granted=
	for id in $(printf '%s' "$NVIDIA_VISIBLE_DEVICES" | tr ',' ' '); do
		minor=
		case $id in
		GPU-*)
			for info in "$proc"/*/information; do
				[ "$(gpu_info_field "$info" "GPU UUID")" = "$id" ] || continue
				minor=$(gpu_info_field "$info" "Device Minor")
				break
			done
			;;
		*[!0-9]*) return 1 ;; # a MIG UUID, or something else: not a whole GPU of this host
		*)
			bus=$(gpu_host_bus_ids | sed -n "$((id + 1))p") # NVML's index: the PCI order
			[ -n "$bus" ] && minor=$(gpu_info_field "$proc/$bus/information" "Device Minor")
			;;
		esac
		[ -n "$minor" ] && [ -e "$dev/nvidia$minor" ] || return 1
		granted="$granted$dev/nvidia$minor
"
	done
	[ -n "$granted" ] || return 1
	printf '%s' "$granted" | sort -V
}

gpu_minor() { # minor number of the character device at $1 (links followed); fails if none
	hex=$(stat -L -c '%T' "$1" 2>/dev/null) && [ -c "$1" ] || return 1
	printf '%d\n' "0x$hex"
}

gpu_slurm_device() { # the device node behind Slurm's GPU index $1
	dev=$(gpu_dev_dir)
	if [ -e "$dev/slurm-gpu$1" ]; then
		printf '%s\n' "$dev/slurm-gpu$1"
		return 0
	fi
	# No links (MIG, where gres.conf uses AutoDetect or the parent's node; or a node that is
	# not a pod): a pod with one GPU device can only mean that one.
	devices=$(gpu_devices)
	[ "$(printf '%s' "$devices" | grep -c .)" -eq 1 ] || return 1
	printf '%s\n' "$devices"
}

# The lookups below run in the Prolog of every job, so they use the shell's own read and globs
# (a Prolog delays the job's first step): no process per GPU but stat's.

gpu_bus_id() { # PCI address of the GPU whose device node has minor $1, from the driver
	want=$1
	for info in "${SLURMD_GPU_PROC_DIR:-/proc/driver/nvidia/gpus}"/*/information; do
		[ -r "$info" ] || continue
		while IFS=: read -r key value; do
			[ "$key" = "Device Minor" ] || continue
			set -- $value
			if [ "${1:-}" = "$want" ]; then
				info=${info%/information}
				printf '%s\n' "${info##*/}"
				return 0
			fi
		done <"$info"
	done
	return 1
}

gpu_host_bus_ids() { # every GPU the nvidia driver drives on the host, in PCI order
	# The kernel names PCI devices in fixed-width lower-case hex: the glob's order is PCI order.
	for device in "${SLURMD_GPU_PCI_DIR:-/sys/bus/pci/drivers/nvidia}"/*:*; do
		class=
		read -r class 2>/dev/null <"$device/class" || continue
		# Display controllers only (class 0x03xxxx): not an NVSwitch or other bridge.
		case $class in 0x03*) printf '%s\n' "${device##*/}" ;; esac
	done
}

# The host index of the GPU whose device node has minor $1 (see the top of this file). Without
# the driver's files (a machine with fake devices, where nothing else reads the index either)
# the minor is all there is, and stands for the index.
gpu_host_index() {
	bus=$(gpu_bus_id "$1") || {
		printf '%s\n' "$1"
		return 0
	}
	rank=0
	for host_bus in $(gpu_host_bus_ids); do
		if [ "$host_bus" = "$bus" ]; then
			printf '%s\n' "$rank"
			return 0
		fi
		rank=$((rank + 1))
	done
	return 1
}
