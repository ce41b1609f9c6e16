#!/bin/bash
# What only real NVIDIA devices can show about the slurmd pod's GPU handling, on a machine with a
# driver and nothing else of ours (no Docker, no Slurm daemons, no Kubernetes). Run from the
# repository root; results also go to "$OUT" when it is set.
#
#   bash benchmarks/gpu_device_check.sh            the machine's /dev/nvidia*, driver and nvidia-smi
#   bash benchmarks/gpu_device_check.sh --fake     fake devices (mknod, needs root), a fake driver
#                                                  tree and a fake nvidia-smi: the script's own test
#
# Environment: GPU_CHECK_GRANTED  minors of the GPUs to treat as the pod's grant, comma-separated
#              [every /dev/nvidiaN]: as the device plugin passes a subset of the host's GPUs.
#
# Checks, each PASS, FAIL or SKIP (a tool or file missing: said, and the rest goes on):
#   1 devices      the GPU device nodes and the driver's files are there
#   2 link         the entrypoint's gpu_link (docker/slurmd/gpu-devices.sh) links the granted
#                  devices as slurm-gpu0..N-1 in their GPUs' PCI order (CUDA's and NVML's), each
#                  to the device node of that GPU
#   3 count        a Gres of one GPU more than granted is refused with exit 5 and its message
#   4 minor        the driver's Device Minor at each PCI address (what gpu-devices.sh reads) is
#                  the Minor Number nvidia-smi -q reports there
#     host-index   for each GPU, the index gpu-devices.sh derives from the minor (through the PCI
#                  address) equals nvidia-smi's index, which is DCGM's GPU id; the table of Slurm
#                  index, minor, PCI address, nvidia-smi index and UUID is printed. SKIP where
#                  nvidia-smi sees only some of the host's GPUs (a container): its index is then
#                  not the host's
#   5 dcgm-map     docker/slurmd/dcgm-job-map.sh as Prolog writes each job's id into the file named
#                  by nvidia-smi's index of its GPU (a job per GPU, then one on all), and as Epilog
#                  takes them out again
# Exit 0 when nothing FAILed (SKIPs are listed), 1 otherwise. Takes a few seconds.
set -u
export LC_ALL=C

repo=$(cd "$(dirname "$0")/.." && pwd)
lib="$repo/docker/slurmd/gpu-devices.sh"
job_map="$repo/docker/slurmd/dcgm-job-map.sh"
work=$(mktemp -d /tmp/gpu-device-check.XXXXXX)
trap 'rm -rf "$work"' EXIT
out_dir=${OUT:-}
report="$work/report.txt"
results="$work/results"
: >"$results"
fake=false
[ "${1:-}" = --fake ] && fake=true

say() { printf '%s\n' "$*" | tee -a "$report"; }
result() { # check name, PASS|FAIL|SKIP, detail
	printf '%-4s %-11s %s\n' "$2" "$1" "$3" | tee -a "$report"
	printf '%s %s\n' "$2" "$1" >>"$results"
}
have() { command -v "$1" >/dev/null 2>&1; }
in_time() { timeout 15 "$@"; } # a hung driver call must not hold up the rest
bus_key() { # 00000000:07:00.0 or 0000:07:00.0 -> 0000:07:00.0 (lower case)
	printf '%s' "$1" | tr 'A-F' 'a-f' | sed 's/^0*\([0-9a-f]\{4\}\):/\1:/; s/^\([0-9a-f]\{1,3\}\):/000\1:/'
}

# --- where the devices are -------------------------------------------------------------------

make_fake() { # two GPUs whose minors run against PCI order, as on some HGX boards
	dev="$work/fake/dev" proc="$work/fake/proc" pci="$work/fake/pci" bin="$work/fake/bin"
	mkdir -p "$dev" "$proc" "$pci" "$bin"
	# minor 1 at 07:00.0 (NVML index 0), minor 0 at 0f:00.0 (index 1); an NVSwitch at 85:00.0
	for entry in "1 0000:07:00.0 0x030200" "0 0000:0f:00.0 0x030200" "- 0000:85:00.0 0x068000"; do
		set -- $entry
		mkdir -p "$pci/$2"
		echo "$3" >"$pci/$2/class"
		[ "$1" = - ] && continue
		mknod "$dev/nvidia$1" c 195 "$1" || return 1
		mkdir -p "$proc/$2"
		printf 'Model: \t\t NVIDIA H200\nIRQ:   \t\t 0\nBus Location: \t %s\nDevice Minor: \t %s\n' "$2" "$1" \
			>"$proc/$2/information"
	done
	mknod "$dev/nvidiactl" c 195 255
	# NVML's view: the host's GPUs in PCI order; in a container granted some, those, from 0.
	cat >"$bin/nvidia-smi" <<'EOF'
#!/bin/sh
granted=",${GPU_CHECK_GRANTED:-0,1},"
i=0
printf '1 00000000:07:00.0 GPU-fake-0\n0 00000000:0F:00.0 GPU-fake-1\n' | while read -r minor bus uuid; do
	case $granted in *,$minor,*) ;; *) continue ;; esac
	case "$*" in
	*--query-gpu=index,pci.bus_id,uuid*) echo "$i, $bus, $uuid" ;;
	-q) printf 'GPU %s\n    Minor Number                          : %s\n' "$bus" "$minor" ;;
	esac
	i=$((i + 1))
done
case "$*" in *--query-gpu=name*) echo "NVIDIA H200 (fake), 0.0" ;; esac
EOF
	chmod 755 "$bin/nvidia-smi"
	PATH="$bin:$PATH"
}

if $fake; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "gpu_device_check: usage: --fake makes device nodes with mknod: run it as root" >&2
		exit 64
	fi
	make_fake || {
		echo "gpu_device_check: could not make fake devices in $work" >&2
		exit 1
	}
	host_dev="$work/fake/dev" proc_dir="$work/fake/proc" pci_dir="$work/fake/pci"
else
	host_dev=/dev proc_dir=/proc/driver/nvidia/gpus pci_dir=/sys/bus/pci/drivers/nvidia
fi
export SLURMD_GPU_PROC_DIR="$proc_dir" SLURMD_GPU_PCI_DIR="$pci_dir"

say "gpu_device_check $(date -u +%FT%TZ) on $(hostname) ($($fake && echo fake devices || echo real devices))"
say "driver: $(cat /proc/driver/nvidia/version 2>/dev/null | head -1 || true)"
[ -r "$lib" ] && . "$lib" || {
	result devices FAIL "no $lib: run from a checkout of the repository"
	exit 1
}

# --- 1. devices --------------------------------------------------------------------------------

minors=$(for d in "$host_dev"/nvidia[0-9]*; do [ -c "$d" ] && gpu_minor "$d"; done | sort -n)
if [ -z "$minors" ]; then
	result devices FAIL "no GPU character device $host_dev/nvidia[0-9]*"
else
	result devices PASS "minors: $(echo $minors)"
fi
granted=""
for m in $(printf '%s' "${GPU_CHECK_GRANTED:-$(echo $minors | tr ' ' ',')}" | tr ',' '\n' | sort -n -u); do
	case " $(echo $minors) " in
	*" $m "*) granted="$granted $m" ;;
	*) result devices FAIL "GPU_CHECK_GRANTED names minor $m, which no device has" ;;
	esac
done
if ls "$proc_dir"/*/information >/dev/null 2>&1; then
	say "driver's GPUs ($proc_dir):"
	for info in "$proc_dir"/*/information; do
		say "  $(basename "$(dirname "$info")")  minor $(sed -n 's/^Device Minor:[[:space:]]*//p' "$info")"
	done
else
	result devices SKIP "no $proc_dir/*/information: host indices fall back to minors"
fi

# The pod's /dev: links to the granted nodes only, as the device plugin passes a subset. Links,
# not copies, so nothing is made in the real /dev and no root is needed.
pod_dev="$work/pod-dev"
mkdir -p "$pod_dev"
node_of() { # the device node of minor $1
	for d in "$host_dev"/nvidia[0-9]*; do
		[ "$(gpu_minor "$d" 2>/dev/null)" = "$1" ] && printf '%s\n' "$d" && return 0
	done
	return 1
}
for m in $granted; do
	node=$(node_of "$m") && ln -s "$node" "$pod_dev/${node##*/}" || say "no device node of minor $m"
done
count=$(printf '%s\n' $granted | grep -c .)
# Slurm's GPU N is the Nth of the granted GPUs in PCI order (gpu_pci_order), as CUDA numbers them.
granted=$(gpu_pci_order $(for m in $granted; do node_of "$m"; done) | while read -r d; do gpu_minor "$d"; done)

# --- 2. link -----------------------------------------------------------------------------------

if [ "$count" -eq 0 ]; then
	result link SKIP "no GPU granted"
else
	errors=$( (SLURMD_DEV_DIR="$pod_dev" SLURMD_GPU_COUNT=$count SLURMD_GRES="gpu:$count" gpu_link) 2>&1)
	code=$?
	bad=""
	i=0
	for m in $granted; do
		target=$(readlink -f "$pod_dev/slurm-gpu$i" 2>/dev/null)
		got=$(gpu_minor "$pod_dev/slurm-gpu$i" 2>/dev/null)
		[ "$target" = "$(readlink -f "$(node_of "$m")")" ] && [ "$got" = "$m" ] ||
			bad="$bad slurm-gpu$i->${target:-nothing}(minor ${got:-?}, want $m)"
		i=$((i + 1))
	done
	if [ "$code" -eq 0 ] && [ -z "$bad" ]; then
		result link PASS "$count GPU(s): slurm-gpu0..$((count - 1)) -> minors $(echo $granted)"
	else
		result link FAIL "gpu_link exit $code $errors$bad"
	fi
fi

# --- 3. count ----------------------------------------------------------------------------------

message=$( (SLURMD_DEV_DIR="$pod_dev" SLURMD_GPU_COUNT=$((count + 1)) SLURMD_GRES="gpu:$((count + 1))" gpu_link) 2>&1)
code=$?
if [ "$code" -eq 5 ] && printf '%s' "$message" | grep -q "node has Gres gpu:$((count + 1)) but the pod sees $count GPU device(s)"; then
	result count PASS "Gres gpu:$((count + 1)) on $count device(s): exit 5, '$message'"
else
	result count FAIL "Gres gpu:$((count + 1)) on $count device(s): exit $code, '$message'"
fi

# --- 4. host-index -----------------------------------------------------------------------------

smi="$work/nvidia-smi.csv" smi_minors="$work/nvidia-smi-minors"
if have nvidia-smi && in_time nvidia-smi --query-gpu=index,pci.bus_id,uuid --format=csv,noheader >"$smi" 2>"$work/smi.err"; then
	say "nvidia-smi: $(in_time nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1)"
	# nvidia-smi -q: "GPU 00000000:07:00.0" then "Minor Number : 1" (NVML's view of the minor)
	in_time nvidia-smi -q 2>/dev/null | awk '/^GPU [0-9A-Fa-f]+:/ {bus = $2} /Minor Number/ {print bus, $NF}' |
		while read -r b mn; do printf '%s %s\n' "$(bus_key "$b")" "$mn"; done >"$smi_minors"
else
	say "nvidia-smi: $(have nvidia-smi && cat "$work/smi.err" || echo 'not installed')"
	: >"$smi"
	: >"$smi_minors"
fi
smi_index() { # nvidia-smi's index and UUID of the GPU at PCI address $1
	while IFS=', ' read -r index bus uuid; do
		[ "$(bus_key "$bus")" = "$1" ] && printf '%s %s\n' "$index" "$uuid" && return 0
	done <"$smi"
	return 1
}
smi_minor() { sed -n "s/^$1 //p" "$smi_minors" | head -1; }
host_gpus=$(gpu_host_bus_ids | grep -c .)
smi_gpus=$(grep -c . "$smi")
# nvidia-smi's index is the host's (DCGM's GPU id) only when it sees every GPU of the host: in a
# container granted some of them, NVML numbers those from 0.
full_view=false
[ "$smi_gpus" -gt 0 ] && [ "$smi_gpus" -eq "$host_gpus" ] && full_view=true
say "GPUs on the host (nvidia driver, PCI): $host_gpus; seen by nvidia-smi: $smi_gpus"
expected_index() { # the file dcgm-exporter would read for minor $1
	if $full_view; then
		set -- $(smi_index "$(bus_key "$(gpu_bus_id "$1" || echo -)")") && printf '%s\n' "$1" && return 0
	fi
	gpu_host_index "$1"
}
say ""
say "slurm  minor  pci-address    derived-index  nvidia-smi-index  nvidia-smi-minor  uuid"
mismatch="" compared=0 minor_bad="" minor_seen=0 i=0
for m in $granted; do
	bus=$(gpu_bus_id "$m" || echo -)
	derived=$(gpu_host_index "$m" || echo -)
	set -- $(smi_index "$(bus_key "$bus")" || echo "- -")
	nv_minor=$(smi_minor "$(bus_key "$bus")")
	say "$(printf '%-6s %-6s %-14s %-14s %-17s %-17s %s' "$i" "$m" "$bus" "$derived" "$1" "${nv_minor:--}" "$2")"
	if [ "$1" != - ] && $full_view; then
		compared=$((compared + 1))
		[ "$derived" = "$1" ] || mismatch="$mismatch minor $m: derived $derived, nvidia-smi $1;"
	fi
	case $nv_minor in
	'' | N/A) ;;
	*) minor_seen=$((minor_seen + 1)) && { [ "$nv_minor" = "$m" ] || minor_bad="$minor_bad $bus: driver minor $m, NVML $nv_minor;"; } ;;
	esac
	[ "$derived" = "$m" ] || say "       note: minor $m is host index $derived: naming files by minor would be wrong here"
	i=$((i + 1))
done
say ""
if [ -n "$minor_bad" ]; then
	result minor FAIL "$minor_bad"
elif [ "$minor_seen" -eq 0 ]; then
	result minor SKIP "no Minor Number from nvidia-smi -q to compare the driver's files with"
else
	result minor PASS "$minor_seen GPU(s): /proc's Device Minor at each PCI address = nvidia-smi -q's Minor Number"
fi
if [ "$host_gpus" -eq 0 ] && [ -n "$(ls "$proc_dir" 2>/dev/null)" ]; then
	result host-index FAIL "the driver has GPUs but $pci_dir lists none: the Prolog cannot find host indices"
elif [ -n "$mismatch" ]; then
	result host-index FAIL "$mismatch"
elif [ "$compared" -eq 0 ] && [ "$smi_gpus" -gt 0 ]; then
	result host-index SKIP "nvidia-smi sees $smi_gpus of the host's $host_gpus GPU(s) (a container's view): its index is not the host's, DCGM's on the host is"
elif [ "$compared" -eq 0 ]; then
	result host-index SKIP "no nvidia-smi index to compare with (nvidia-smi missing or failed)"
else
	result host-index PASS "$compared GPU(s): derived index = nvidia-smi index (DCGM's GPU id)"
fi
if have dcgmi; then # the exporter's own ids, where DCGM is installed
	in_time dcgmi discovery -l 2>&1 | tee -a "$report" | head -40 >/dev/null
fi

# --- 5. dcgm-map -------------------------------------------------------------------------------

map="$work/dcgm-job-map"
mkdir -p "$map"
run_map() { # context, job, Slurm GPU indices: the script as slurmd runs it (Slurm's variables only)
	env -i SLURMD_DEV_DIR="$pod_dev" SLURMD_GPU_PROC_DIR="$proc_dir" SLURMD_GPU_PCI_DIR="$pci_dir" \
		DCGM_JOB_MAPPING_DIR="$map" SLURM_JOB_ID="$2" SLURMD_NODENAME=check1 SLURM_JOB_GPUS="${3:-}" \
		SLURM_SCRIPT_CONTEXT="$1" /bin/sh "$job_map" 2>&1
}
if [ "$count" -eq 0 ]; then
	result dcgm-map SKIP "no GPU granted"
else
	# One job per GPU (job 4200+N on Slurm's GPU N), so a permutation shows; then one job on all.
	wrong="" messages="" i=0 all_gpus="" expected=""
	for m in $granted; do
		set -- $(expected_index "$m")
		messages="$messages$(run_map prolog_slurmd $((4200 + i)) "$i")"
		expected="$expected $1=$((4200 + i))"
		all_gpus="$all_gpus${all_gpus:+,}$i"
		i=$((i + 1))
	done
	messages="$messages$(run_map prolog_slurmd 4299 "$all_gpus")"
	files=$(cd "$map" && ls | grep -E '^[0-9]+$' | sort -n | paste -sd' ' -)
	for pair in $expected; do
		index=${pair%=*} job=${pair#*=}
		got=$(paste -sd, - <"$map/$index" 2>/dev/null)
		[ "$got" = "$job,4299" ] || wrong="$wrong file $index has [${got}], want [$job,4299];"
		say "  file $index: $(paste -sd' ' - 2>/dev/null <"$map/$index")"
	done
	[ "$(printf '%s\n' $expected | wc -l)" -eq "$(printf '%s\n' $files | wc -l)" ] || wrong="$wrong files [$files];"
	i=0
	for m in $granted; do messages="$messages$(run_map epilog_slurmd $((4200 + i)))"; i=$((i + 1)); done
	messages="$messages$(run_map epilog_slurmd 4299)"
	left=$(cat "$map"/[0-9]* 2>/dev/null | grep -c .)
	[ -z "$messages" ] || say "dcgm-job-map said: $messages"
	if [ -z "$wrong" ] && [ -z "$messages" ] && [ "$left" -eq 0 ]; then
		result dcgm-map PASS "file(s) [$files]: each GPU's job under its $($full_view && echo nvidia-smi || echo derived host) index; none left after the epilogs"
	else
		result dcgm-map FAIL "${wrong}${messages:+ messages: $messages;} job ids left after the epilogs: $left"
	fi
fi

# --- summary -----------------------------------------------------------------------------------

fails=$(grep -c '^FAIL' "$results")
skips=$(grep '^SKIP' "$results" | cut -d' ' -f2 | paste -sd, -)
say ""
if [ "$fails" -eq 0 ]; then
	say "gpu_device_check: PASS${skips:+ (skipped: $skips)}"
else
	say "gpu_device_check: FAIL ($(grep '^FAIL' "$results" | cut -d' ' -f2 | paste -sd, -))"
fi
if [ -n "$out_dir" ]; then
	mkdir -p "$out_dir" && cp "$report" "$out_dir/gpu_device_check.txt" && cp "$smi" "$out_dir/nvidia-smi.csv"
fi
[ "$fails" -eq 0 ]
