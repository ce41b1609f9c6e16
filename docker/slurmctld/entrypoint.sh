#!/bin/sh
# Entrypoint of the compose file's slurmctld: munged, then slurmctld in the foreground with the
# bridge's hooks, CLOUD nodes elastic[1-N] and a bridge config, all written from the environment.
#
# It waits for the Kubernetes side (the kind or standin service of docker/docker-compose.yml)
# to leave in $KUBE_DIR:
#   kubeconfig          the bridge's kubeconfig (its ServiceAccount's token)
#   controller-address  the address slurmd pods reach this host at (slurmctld uses the host's
#                       network): 127.0.0.1 for the stand-in, the kind network's gateway for kind
#   pod-network         optional, how pods are networked, as KEY=VALUE lines overriding the
#                       defaults of SLURMD_PORT and POD_HOST_NETWORK below (the stand-in runs
#                       every pod on one host's network, so each node gets a port of its own)
#
# Environment [default]:
#   CLUSTER_NAME [compose]  NODE_COUNT [2]  NODE_CPUS [1]  NODE_MEMORY (MiB) [1000]
#   SLURMCTLD_PORT [6817]
#   SLURMD_PORT    [6818]: one port for every node (each pod has its own address, as on kind),
#                  or "first-last" to give node i its own port (all pods on one host's network)
#   POD_HOST_NETWORK [true]: the nodeset's host_network (kind: each pod on its node's network,
#                  which slurmctld on the host reaches; pod IPs it could not)
#   SLURMD_IMAGE   [slurm-k8s-bridge/slurmd:$SLURM_VERSION]
#   SUSPEND_TIME [60]  SUSPEND_TIMEOUT [45]  RESUME_TIMEOUT [300]  RESUME_DEADLINE [120]
#   KUBE_DIR [/etc/slurm-k8s-bridge/kube]  KUBE_WAIT (seconds) [600]
#   RESEARCHER [researcher]  RESEARCHER_UID [2000]: the site's one user, who submits jobs here
#                  (this container is also the login node) from /home/$RESEARCHER. /home is
#                  the compose file's HOME_DIR, a host directory the pods mount at /home too,
#                  so a job runs as the researcher in their own directory and its output file
#                  is there after the pods are gone, as on a static node. The kind or standin
#                  service puts the same user in the pods (the nodeset's users ConfigMap).
#   HOME_DIR       the host directory mounted at /home [/var/lib/slurm-k8s-bridge-home]: an
#                  absolute path without a trailing /, as the nodeset's host_path must be
set -eu

prog=slurmctld-entrypoint
version=$(slurmctld -V | awk '{print $2}')
cluster=${CLUSTER_NAME:-compose}
count=${NODE_COUNT:-2}
ctld_port=${SLURMCTLD_PORT:-6817}
kube_dir=${KUBE_DIR:-/etc/slurm-k8s-bridge/kube}
image=${SLURMD_IMAGE:-slurm-k8s-bridge/slurmd:$version}
bridge=/opt/slurm-k8s-bridge/bin

die() {
	printf '%s: %s\n' "$prog" "$*" >&2
	exit 1
}

# The cluster's munge key lives in the shared volume: made once, by the first start.
if [ ! -s /etc/munge/munge.key ]; then
	(umask 077 && dd if=/dev/urandom of=/etc/munge/munge.key.new bs=1024 count=1 2>/dev/null)
	mv /etc/munge/munge.key.new /etc/munge/munge.key
	echo "$prog: made a new munge key in /etc/munge/munge.key"
fi
chmod 0400 /etc/munge/munge.key

waited=0
while [ ! -s "$kube_dir/kubeconfig" ] || [ ! -s "$kube_dir/controller-address" ]; do
	[ "$waited" -eq 0 ] && echo "$prog: waiting for the Kubernetes side ($kube_dir/kubeconfig): start the compose file with --profile kind or --profile standin"
	waited=$((waited + 1))
	[ "$waited" -le "${KUBE_WAIT:-600}" ] || die "no $kube_dir/kubeconfig after ${KUBE_WAIT:-600} s"
	sleep 1
done
address=$(cat "$kube_dir/controller-address")
if [ -s "$kube_dir/pod-network" ]; then
	# shellcheck disable=SC1091
	. "$kube_dir/pod-network"
fi
slurmd_port=${SLURMD_PORT:-6818}
# Hooks run as SlurmUser: they get their own copy of the kubeconfig.
install -o slurm -g slurm -m 0600 "$kube_dir/kubeconfig" /etc/slurm/k8s-bridge.kubeconfig

if [ "$count" -gt 1 ]; then nodes="elastic[1-$count]"; else nodes=elastic1; fi
# cloud_reg_addrs is Slurm 22.05-23.02 only (slurm.conf.power-saving; testenv/slurm_versions.py).
case $version in
2[0-2].* | 23.0[0-9].*) drop_removed= ;;
*) drop_removed='/^SlurmctldParameters=/s/,cloud_reg_addrs//' ;;
esac
case $slurmd_port in
*-*) node_port="Port=[$slurmd_port]" ;;
*) node_port="Port=$slurmd_port" ;;
esac

{
	cat <<EOF
# Written by $prog from the container's environment.
ClusterName=$cluster
SlurmctldHost=$(hostname -s)($address)
SlurmctldPort=$ctld_port
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
# Containers lack the cgroup mounts the cgroup plugins need.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
SchedulerParameters=batch_sched_delay=0
MailProg=/bin/true
EOF
	echo
	echo "# From slurm.conf.power-saving (slurm-k8s-bridge), with this image's hook paths."
	sed -e "s#^ResumeProgram=.*#ResumeProgram=$bridge/slurm-k8s-resume#" \
		-e "s#^SuspendProgram=.*#SuspendProgram=$bridge/slurm-k8s-suspend#" \
		-e "s#^ResumeFailProgram=.*#ResumeFailProgram=$bridge/slurm-k8s-resume-fail#" \
		-e "s#^PrologSlurmctld=.*#PrologSlurmctld=$bridge/slurm-k8s-prolog#" \
		-e "s#^SuspendTime=.*#SuspendTime=${SUSPEND_TIME:-60}#" \
		-e "s#^SuspendTimeout=.*#SuspendTimeout=${SUSPEND_TIMEOUT:-45}#" \
		-e "s#^ResumeTimeout=.*#ResumeTimeout=${RESUME_TIMEOUT:-300}#" \
		-e "${drop_removed:-/^\$/d}" \
		/usr/share/slurm-k8s-bridge/slurm.conf.power-saving | grep -v '^#' | grep -v '^$'
	echo
	echo "NodeName=$nodes CPUs=${NODE_CPUS:-1} RealMemory=${NODE_MEMORY:-1000} State=CLOUD $node_port"
	echo "PartitionName=elastic Nodes=$nodes Default=YES MaxTime=INFINITE State=UP"
} >/etc/slurm/slurm.conf

first_port=${slurmd_port%%-*}
researcher=${RESEARCHER:-researcher}
researcher_uid=${RESEARCHER_UID:-2000}
home_dir=${HOME_DIR:-/var/lib/slurm-k8s-bridge-home}
case $home_dir in
/*/ | /*//* | */../* | */./* | *#*) die "HOME_DIR=$home_dir: expected a clean absolute path (no trailing /, no . or ..)" ;;
/?*) ;;
*) die "HOME_DIR=$home_dir: expected an absolute path" ;;
esac
cat >/etc/slurm/k8s-bridge.yaml <<EOF
# Written by $prog. Keys: bridge/config.py.
slurm:
  conf_server: "$address:$ctld_port"
  cluster_name: "$cluster"
kubernetes:
  kubeconfig: /etc/slurm/k8s-bridge.kubeconfig
  namespace: slurm
log:
  file: /var/log/slurm/k8s-bridge.log
resume:
  deadline: ${RESUME_DEADLINE:-120}
nodesets:
  - name: elastic
    nodes: "$nodes"
    image: "$image"
    host_network: ${POD_HOST_NETWORK:-true}
    slurmd_port: $first_port
    users: {config_map: site-users}
    filesystems:
      - {name: home, path: /home, host_path: "$home_dir"}
EOF
chmod 0644 /etc/slurm/slurm.conf /etc/slurm/k8s-bridge.yaml

# The researcher: an ordinary user with a home in the shared /home, made once (HOME_DIR keeps it).
getent group "$researcher" >/dev/null || groupadd -g "$researcher_uid" "$researcher"
getent passwd "$researcher" >/dev/null ||
	useradd -M -u "$researcher_uid" -g "$researcher" -d "/home/$researcher" -s /bin/bash "$researcher"
install -d -m 0750 "/home/$researcher"
chown "$researcher:$researcher" "/home/$researcher" # also after RESEARCHER_UID changed

mkdir -p /run/munge /run/munged
chmod 0755 /run/munge # munged refuses a socket dir others cannot traverse
chmod 0700 /run/munged # and key/seed/pid dirs not owned by the user it runs as (root here):
install -m 0400 /etc/munge/munge.key /run/munged/munge.key # a private copy, whatever the volume's owner
munged --foreground --key-file=/run/munged/munge.key --pid-file=/run/munged/munged.pid \
	--seed-file=/run/munged/munged.seed &
tries=100
until munge -n 2>/dev/null | unmunge >/dev/null 2>&1; do
	tries=$((tries - 1))
	[ "$tries" -gt 0 ] || die "munged did not start"
	sleep 0.1
done
echo "$prog: slurmctld $version, nodes $nodes, pods reach it at $address:$ctld_port, image $image, user $researcher ($researcher_uid)"
exec slurmctld -D "$@"
