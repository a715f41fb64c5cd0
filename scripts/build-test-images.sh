#!/usr/bin/env bash
# Build the local base images the Docker-tier tests run on (no container registry is reachable,
# so they are imported from root filesystems made on this machine).
#
#   runner-test/busybox:1         busybox-static applets, /etc/passwd+group, /tmp (1777), /root, /var/www
#   runner-test/debian-python:1   debootstrap minbase bookworm + python3, prometheus-client, prometheus,
#                                 ca-certificates, curl, procps, git
#
# Images are cached by tag: an existing tag is skipped. Changing a recipe means bumping its tag
# (here AND in tests/conftest.py).
#
# Usage: scripts/build-test-images.sh [--only busybox|debian]
set -euo pipefail

readonly BUSYBOX_TAG="runner-test/busybox:1"
readonly DEBIAN_TAG="runner-test/debian-python:1"
readonly DEBIAN_SUITE="bookworm"
readonly DEBIAN_MIRROR="${RUNNER_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
readonly DEBIAN_PACKAGES="python3,python3-prometheus-client,prometheus,ca-certificates,curl,procps,git"
# Every image gets the same config: the test-image label and a shell as the default command.
readonly IMPORT_CHANGES=(--change 'LABEL ai.runner.test-image=1' --change 'CMD ["/bin/sh"]')

WORK_DIR=""
CURRENT=""

say() { printf 'build-test-images: %s\n' "$*" >&2; }
die() { say "error: $*"; exit 1; }

usage() {
    cat <<'EOF'
Usage: scripts/build-test-images.sh [--only busybox|debian]

Builds runner-test/busybox:1 and runner-test/debian-python:1 from local root filesystems,
skipping any tag that already exists. Needs root (apt-get, debootstrap) and a running Docker
engine (scripts/ensure-docker.sh).
EOF
}

on_exit() {
    local rc=$?
    if [[ -n "${WORK_DIR}" && -d "${WORK_DIR}" ]]; then
        rm -rf --one-file-system "${WORK_DIR}"
    fi
    if ((rc != 0)) && [[ -n "${CURRENT}" ]]; then
        say "error: building ${CURRENT} failed (exit ${rc}); see the messages above"
    fi
}
trap on_exit EXIT

image_exists() {
    docker image inspect "$1" >/dev/null 2>&1
}

apt_install() {
    [[ "$(id -u)" -eq 0 ]] || die "package(s) $* missing and not root: install them (apt-get install $*)"
    say "installing $* (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q || die "apt-get update failed"
    apt-get install -y -q "$@" || die "apt-get install $* failed"
}

new_work_dir() {
    WORK_DIR="$(mktemp -d /tmp/runner-test-image.XXXXXX)"
}

drop_work_dir() {
    rm -rf --one-file-system "${WORK_DIR}"
    WORK_DIR=""
}

# Pack a root filesystem as root-owned files and import it under TAG.
import_rootfs() {
    local rootfs="$1" tag="$2"
    tar --numeric-owner --owner=0 --group=0 -C "${rootfs}" -c . \
        | docker import "${IMPORT_CHANGES[@]}" --message "runner test image ${tag}" - "${tag}" >/dev/null
}

build_busybox() {
    dpkg -s busybox-static >/dev/null 2>&1 || apt_install busybox-static
    local busybox=/bin/busybox
    [[ -x "${busybox}" ]] || die "${busybox} not found after installing busybox-static"

    new_work_dir
    local rootfs="${WORK_DIR}/rootfs"
    mkdir -p "${rootfs}"/{bin,sbin,usr/bin,usr/sbin,etc,root,var/www,tmp}
    chmod 1777 "${rootfs}/tmp"
    chmod 0700 "${rootfs}/root"
    cp "${busybox}" "${rootfs}/bin/busybox"

    # One symlink per applet at its canonical path (bin/sh, usr/bin/env, sbin/...).
    local applet
    while read -r applet; do
        [[ "${applet}" == "linuxrc" || "${applet}" == "bin/busybox" ]] && continue
        ln -s /bin/busybox "${rootfs}/${applet}"
    done < <("${busybox}" --list-full)
    [[ -L "${rootfs}/bin/sh" ]] || die "busybox has no sh applet"

    printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' 'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' \
        >"${rootfs}/etc/passwd"
    printf '%s\n' 'root:x:0:' 'nogroup:x:65534:' >"${rootfs}/etc/group"

    import_rootfs "${rootfs}" "${BUSYBOX_TAG}"
    drop_work_dir
}

build_debian() {
    command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
    [[ "$(id -u)" -eq 0 ]] || die "debootstrap needs root"

    new_work_dir
    local rootfs="${WORK_DIR}/rootfs"
    say "debootstrap --variant=minbase ${DEBIAN_SUITE} (+ ${DEBIAN_PACKAGES}) from ${DEBIAN_MIRROR}"
    if ! debootstrap --variant=minbase --include="${DEBIAN_PACKAGES}" \
        "${DEBIAN_SUITE}" "${rootfs}" "${DEBIAN_MIRROR}" >"${WORK_DIR}/debootstrap.out" 2>&1; then
        say "debootstrap failed; last lines of its output and log:"
        tail -n 20 "${WORK_DIR}/debootstrap.out" >&2 || true
        tail -n 20 "${rootfs}/debootstrap/debootstrap.log" >&2 || true
        die "debootstrap ${DEBIAN_SUITE} failed"
    fi

    # Keep the image small and free of this host's details; Docker provides /dev, /proc, /sys,
    # resolv.conf, hostname and hosts at run time.
    rm -rf "${rootfs}"/var/cache/apt/archives/*.deb "${rootfs}"/var/lib/apt/lists/* \
        "${rootfs}"/var/log/* "${rootfs}"/tmp/* "${rootfs}"/debootstrap
    rm -f "${rootfs}"/etc/resolv.conf "${rootfs}"/etc/hostname
    mkdir -p "${rootfs}/var/www"

    tar --numeric-owner -C "${rootfs}" -c --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' . \
        | docker import "${IMPORT_CHANGES[@]}" --message "runner test image ${DEBIAN_TAG}" \
            - "${DEBIAN_TAG}" >/dev/null
    drop_work_dir
}

# build NAME TAG FUNCTION: skip when TAG exists, else run FUNCTION and report the time it took.
build() {
    local name="$1" tag="$2" fn="$3"
    if image_exists "${tag}"; then
        say "${tag}: already present, skipping (bump the tag to rebuild)"
        return
    fi
    CURRENT="${tag}"
    local start=${SECONDS}
    say "${tag}: building (${name})"
    "${fn}"
    image_exists "${tag}" || die "${tag}: import finished but the image is not there"
    say "${tag}: built in $((SECONDS - start))s"
    CURRENT=""
}

main() {
    local only=""
    while (($# > 0)); do
        case "$1" in
            --only)
                (($# >= 2)) || die "--only needs an argument: busybox or debian"
                only="$2"
                shift 2
                ;;
            --only=*)
                only="${1#--only=}"
                shift
                ;;
            -h | --help)
                usage
                exit 0
                ;;
            *)
                usage >&2
                die "unknown argument: $1"
                ;;
        esac
    done
    case "${only}" in
        "" | busybox | debian) ;;
        *) die "--only takes busybox or debian, not '${only}'" ;;
    esac

    command -v docker >/dev/null 2>&1 || die "docker CLI not found; run scripts/ensure-docker.sh (make engine)"
    docker info >/dev/null 2>&1 || die "no Docker engine answers; run scripts/ensure-docker.sh (make engine)"

    if [[ -z "${only}" || "${only}" == busybox ]]; then
        build busybox "${BUSYBOX_TAG}" build_busybox
    fi
    if [[ -z "${only}" || "${only}" == debian ]]; then
        build debian "${DEBIAN_TAG}" build_debian
    fi
}

main "$@"
