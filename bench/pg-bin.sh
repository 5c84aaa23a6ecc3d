# Sourced by the bench's shell scripts: `find_bin NAME` prints the path of a PostgreSQL program, from
# PATH or else from the newest /usr/lib/postgresql/*/bin, and exits the script when there is none.
find_bin() {
    local name=$1
    if command -v "$name" >/dev/null 2>&1; then
        command -v "$name"
        return
    fi
    local found
    found=$(ls -d /usr/lib/postgresql/*/bin/"$name" 2>/dev/null | sort -V | tail -n 1)
    if [ -z "$found" ]; then
        echo "$(basename "$0" .sh): $name not found (install PostgreSQL's server and client binaries)" >&2
        exit 2
    fi
    echo "$found"
}
