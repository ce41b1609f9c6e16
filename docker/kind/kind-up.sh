#!/bin/sh
# The kind service of docker/docker-compose.yml (see docker/kind/Dockerfile). Idempotent: a
# restarted service reuses the cluster. SIGTERM (compose stop/down) deletes the cluster.
#
# Environment: KIND_CLUSTER [slurm], SLURMD_IMAGE (loaded into the cluster),
# KUBE_DIR [/etc/slurm-k8s-bridge/kube] (shared with slurmctld), NAMESPACE [slurm],
# HOME_DIR [/var/lib/slurm-k8s-bridge-home] (the host directory the workers mount for the pods'
# /home), RESEARCHER [researcher] and RESEARCHER_UID [2000] (the site-users ConfigMap's user).
set -eu

prog=kind-up
cluster=${KIND_CLUSTER:-slurm}
kube_dir=${KUBE_DIR:-/etc/slurm-k8s-bridge/kube}
namespace=${NAMESPACE:-slurm}
home_dir=${HOME_DIR:-/var/lib/slurm-k8s-bridge-home}
researcher=${RESEARCHER:-researcher}
researcher_uid=${RESEARCHER_UID:-2000}
admin=$kube_dir/admin.kubeconfig
export KUBECONFIG="$admin"

say() { printf '%s: %s\n' "$prog" "$*"; }

rm -f "$kube_dir/kubeconfig" "$kube_dir/controller-address" "$kube_dir/pod-network"
if kind get clusters 2>/dev/null | grep -qx "$cluster"; then
	say "reusing kind cluster $cluster"
	kind export kubeconfig --name "$cluster" --kubeconfig "$admin"
else
	say "creating kind cluster $cluster (pulls kind's node image the first time)"
	sed "s#@HOME_DIR@#$home_dir#g" /opt/slurm-k8s-bridge/kind/cluster.yaml >/tmp/cluster.yaml
	kind create cluster --name "$cluster" --config /tmp/cluster.yaml \
		--kubeconfig "$admin" --wait 180s
fi

deleting=
stop() {
	[ -z "$deleting" ] || return 0
	deleting=1
	rm -f "$kube_dir/kubeconfig" "$kube_dir/controller-address" "$kube_dir/pod-network"
	say "deleting kind cluster $cluster"
	kind delete cluster --name "$cluster" --kubeconfig "$admin"
	exit 0
}
trap stop TERM INT

# The image was built on this host (the slurmd-image service): kind's nodes cannot pull it.
tries=0
until docker image inspect "$SLURMD_IMAGE" >/dev/null 2>&1; do
	tries=$((tries + 1))
	[ "$tries" -le 600 ] || { say "image $SLURMD_IMAGE was never built"; exit 1; }
	sleep 1
done
kind load docker-image "$SLURMD_IMAGE" --name "$cluster"

# What a site applies once: the namespace, the bridge's least-privilege RBAC, the munge key.
kubectl apply -k /opt/slurm-k8s-bridge/rbac
until [ -s /etc/munge/munge.key ]; do sleep 1; done # slurmctld makes it at its first start
kubectl -n "$namespace" create secret generic munge-key --from-file=munge.key=/etc/munge/munge.key \
	--dry-run=client -o yaml | kubectl apply -f -
# The site's users, as the nodeset's users ConfigMap: the researcher slurmctld also has.
mkdir -p /tmp/site-users
printf '%s:x:%s:%s::/home/%s:/bin/bash\n' "$researcher" "$researcher_uid" "$researcher_uid" "$researcher" \
	>/tmp/site-users/passwd
printf '%s:x:%s:\n' "$researcher" "$researcher_uid" >/tmp/site-users/group
kubectl -n "$namespace" create configmap site-users --from-file=/tmp/site-users \
	--dry-run=client -o yaml | kubectl apply -f -

# The bridge's kubeconfig: the API server as the host sees it, the ServiceAccount's token.
until token=$(kubectl -n "$namespace" get secret slurm-k8s-bridge-token -o jsonpath='{.data.token}' 2>/dev/null) &&
	[ -n "$token" ]; do
	sleep 1
done
server=$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')
ca=$(kubectl config view --minify --raw -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')
umask 077
cat >"$kube_dir/kubeconfig.new" <<EOC
apiVersion: v1
kind: Config
clusters:
  - name: kind-$cluster
    cluster: {server: "$server", certificate-authority-data: "$ca"}
users:
  - name: slurm-k8s-bridge
    user: {token: "$(printf '%s' "$token" | base64 -d)"}
contexts:
  - name: slurm-k8s-bridge
    context: {cluster: "kind-$cluster", user: slurm-k8s-bridge, namespace: "$namespace"}
current-context: slurm-k8s-bridge
EOC
mv "$kube_dir/kubeconfig.new" "$kube_dir/kubeconfig"
umask 022

# Pods use their kind node's network and reach slurmctld (on the host) through the gateway.
gateway=$(docker network inspect kind -f '{{range .IPAM.Config}}{{.Gateway}} {{end}}' |
	tr ' ' '\n' | grep -E '^[0-9]+\.[0-9]+\.[0-9]+\.[0-9]+$' | head -n 1)
printf 'SLURMD_PORT=6818\nPOD_HOST_NETWORK=true\n' >"$kube_dir/pod-network"
echo "$gateway" >"$kube_dir/controller-address"
say "ready: pods reach slurmctld at $gateway; kubectl: docker compose exec kind kubectl -n $namespace get pods"

while :; do
	sleep 3600 &
	wait $! || true
done
