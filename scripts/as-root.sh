# Sourced by the set-up scripts (before they cd): run the calling script as root. As root (a container, a
# root-only machine with no sudo) nothing happens; otherwise it re-runs itself with sudo.
if [[ $EUID -ne 0 ]]; then
    if ! command -v sudo >/dev/null; then
        echo "$(basename "$0"): run me as root (there is no sudo here)" >&2
        exit 1
    fi
    exec sudo --preserve-env=PYTHON,EXECLOOP_DOCKERD_LOG "$0" "$@"
fi
