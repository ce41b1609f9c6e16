#!/usr/bin/env bash
# Docker for the tests, the Docker pod runtime and the compose environment, on Debian 12 as root.
#
#   bash testenv/docker-setup.sh      # installs docker.io, debootstrap, docker-compose; builds the images
#
# - Starts the project's own dockerd (testenv/docker.py: data root /var/lib/slurm-k8s-bridge-docker,
#   socket /run/slurm-k8s-bridge-docker.sock) for the time of the set-up, and stops it again.
# - No registry is reachable here: if the engine has no debian:bookworm-slim, one is made from
#   Debian's packages (debootstrap) and tagged with that name, so the Dockerfiles, which start
#   FROM debian:bookworm-slim, build unchanged (Docker pulls only images it does not have).
# - Builds the images, tagged with this host's Slurm version (slurmd must match slurmctld):
#   slurm-k8s-bridge/slurmd:V, slurm-k8s-bridge/slurmctld:V, slurm-k8s-bridge/testenv:V.
#   An image whose sources (Dockerfile and what it copies) have not changed is not rebuilt.
# Idempotent. A failure is also written to /var/lib/slurm-k8s-bridge-docker/setup-failed, so the
# docker-marked tests fail with the reason instead of being skipped.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
data_root=/var/lib/slurm-k8s-bridge-docker
failed=$data_root/setup-failed
step="start"

outside_engine() {
  mkdir -p "$data_root"
  rm -f "$failed"
  trap 'rc=$?; if ((rc)) && [[ ! -e $failed ]]; then echo "exit $rc while $step (see its output)" >"$failed"; fi' EXIT
  step="installing docker.io debootstrap docker-compose"
  local packages=(docker.io debootstrap docker-compose) missing=() p
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    echo "docker-setup: installing ${missing[*]}"
    apt-get update -qq
    # policy-rc.d: no systemd here, and the packages must not start the system's dockerd.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  step="starting the project's dockerd"
  cd "$repo"
  PYTHONPATH="$repo" python3 -m testenv.docker run -- bash "$repo/testenv/docker-setup.sh" --with-engine
}

# Docker's slim Debian images, made from Debian's packages: minbase, the archive's security and
# updates suites, no documentation, no apt caches (what debuerreotype's "slim" variant removes).
make_base_image() {
  rootfs=$(mktemp -d /var/tmp/slurm-k8s-bridge-rootfs.XXXXXX)  # removed by the EXIT trap
  echo "docker-setup: debootstrap bookworm (no registry here: debian:bookworm-slim made from Debian's packages)"
  debootstrap --variant=minbase bookworm "$rootfs" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >/dev/null
  rm -f "$rootfs/etc/apt/sources.list"
  cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: ${DEBIAN_MIRROR:-http://deb.debian.org/debian}
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
EOF
  cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
EOF
  printf 'APT::Install-Recommends "false";\nAPT::AutoRemove::SuggestsImportant "false";\n' \
    >"$rootfs/etc/apt/apt.conf.d/docker-no-recommends"
  find "$rootfs/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete
  find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$rootfs"/usr/share/{man,info,lintian}/* "$rootfs"/var/cache/apt/* "$rootfs"/var/lib/apt/lists/*
  find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
  rm -f "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/* "$rootfs/etc/machine-id"
  tar -C "$rootfs" --numeric-owner -c . |
    docker import --change 'CMD ["bash"]' \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --message "debootstrap --variant=minbase bookworm (testenv/docker-setup.sh)" - debian:bookworm-slim >/dev/null
}

# build TAG HASH_INPUTS... -- DOCKER_BUILD_ARGS...: skipped when TAG carries the same source hash.
build() {
  local tag=$1 hash
  shift
  local inputs=()
  while [[ $1 != -- ]]; do inputs+=("$1"); shift; done
  shift
  hash=$(cd "$repo" && find "${inputs[@]}" -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 | sort -z |
    xargs -0 sha256sum | sha256sum | cut -c1-16)
  if [[ $(docker image inspect -f "{{ index .Config.Labels \"org.slurm-k8s-bridge.source-hash\" }}" "$tag" 2>/dev/null) == "$hash" ]]; then
    echo "docker-setup: $tag is up to date"
    return
  fi
  echo "docker-setup: building $tag"
  local started=$SECONDS
  (cd "$repo" && docker build -q --network host --label "org.slurm-k8s-bridge.source-hash=$hash" \
    --build-arg "SLURM_VERSION=$version" -t "$tag" "$@" >/dev/null)
  echo "docker-setup: built $tag in $((SECONDS - started)) s"
}

with_engine() {
  : "${DOCKER_HOST:?run through testenv/docker.py}"
  rootfs=
  trap 'rc=$?; [[ -z $rootfs ]] || rm -rf "$rootfs"; if ((rc)); then echo "exit $rc while $step (see its output)" >"$failed"; fi' EXIT
  version=$(PYTHONPATH="$repo" python3 -m testenv.docker version)
  step="making the base image debian:bookworm-slim"
  if ! docker image inspect debian:bookworm-slim >/dev/null 2>&1; then
    make_base_image
  fi
  step="building slurm-k8s-bridge/slurmd:$version"
  build "slurm-k8s-bridge/slurmd:$version" docker/slurmd -- docker/slurmd
  step="done"
}

if [[ ${1:-} == --with-engine ]]; then
  with_engine
else
  started=$SECONDS
  outside_engine
  echo "docker-setup: ready in $((SECONDS - started)) s"
fi
