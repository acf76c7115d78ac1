#!/usr/bin/env bash
# Benchmark: treeport beside umoci and `tar | gzip` on the same real tree, in
# one run. Prints wall time, CPU time, output size and peak memory of each,
# and the ratios against umoci. Not a test: the numbers are for people.
#
#   tests/bench.sh            (make bench builds treeport first)
#   RUNS=5 tests/bench.sh     best of 5 runs per tool (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
WORK=${BENCH_DIR:-target/bench}
TREEPORT=${TREEPORT:-target/release/treeport}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)

for tool in umoci mmdebstrap /usr/bin/time gzip tar; do
    command -v "$tool" >/dev/null || { echo "missing $tool: run make deps" >&2; exit 1; }
done
[ -x "$TREEPORT" ] || cargo build --release -p treeport-cli

if [ ! -d "$WORK/rootfs" ]; then
    echo "building a minbase bookworm tree with mmdebstrap..." >&2
    mmdebstrap --variant=minbase --mode=root --quiet bookworm "$WORK/rootfs.tmp" "$MIRROR"
    mv "$WORK/rootfs.tmp" "$WORK/rootfs"
fi
files=$(find "$WORK/rootfs" | wc -l)
bytes=$(du -sb "$WORK/rootfs" | cut -f1)
echo "tree: $WORK/rootfs, $files entries, $((bytes / 1000000)) MB; $(nproc) cores; best of $RUNS runs"
echo

# measure NAME SETUP COMMAND OUTPUT: runs SETUP then COMMAND (timed) RUNS
# times; keeps the fastest run's wall/cpu and the largest peak memory, and the
# size of OUTPUT (a file, or a directory of blobs).
declare -A WALL CPU RSS SIZE
measure() {
    local name=$1 setup=$2 cmd=$3 output=$4
    local best="" cpu="" rss=0
    for _ in $(seq "$RUNS"); do
        bash -c "$setup"
        sync
        /usr/bin/time -f '%e %U %S %M' -o "$WORK/time.txt" bash -c "$cmd" >/dev/null 2>"$WORK/stderr.txt" || {
            echo "$name failed:" >&2; cat "$WORK/stderr.txt" >&2; exit 1; }
        read -r wall user sys maxrss < "$WORK/time.txt"
        if [ -z "$best" ] || awk "BEGIN{exit !($wall < $best)}"; then
            best=$wall
            cpu=$(awk "BEGIN{printf \"%.2f\", $user + $sys}")
        fi
        [ "$maxrss" -gt "$rss" ] && rss=$maxrss
    done
    WALL[$name]=$best
    CPU[$name]=$cpu
    RSS[$name]=$rss
    if [ -d "$output" ]; then
        SIZE[$name]=$(find "$output" -type f -size +100k -printf '%s\n' | awk '{s+=$1} END{print s+0}')
    else
        SIZE[$name]=$(stat -c %s "$output")
    fi
}

R=$WORK/rootfs
measure "treeport gzip" "rm -rf $WORK/tp" \
    "$TREEPORT export -q --source rootfs:$R --sink oci:$WORK/tp:bench" "$WORK/tp/blobs"
measure "treeport zstd" "rm -rf $WORK/tpz" \
    "$TREEPORT export -q --compression zstd --source rootfs:$R --sink oci:$WORK/tpz:bench" "$WORK/tpz/blobs"
measure "umoci insert" "rm -rf $WORK/um && umoci init --layout $WORK/um && umoci new --image $WORK/um:bench" \
    "umoci insert --image $WORK/um:bench $R /" "$WORK/um/blobs"
measure "tar | gzip -6" "rm -f $WORK/tree.tar.gz" \
    "tar -C $R --numeric-owner --xattrs -cf - . | gzip -6 > $WORK/tree.tar.gz" "$WORK/tree.tar.gz"

printf '%-16s %9s %9s %11s %10s %11s %11s\n' tool wall_s cpu_s size_MB peak_MiB wall/umoci size/umoci
for name in "treeport gzip" "treeport zstd" "umoci insert" "tar | gzip -6"; do
    printf '%-16s %9.2f %9.2f %11.1f %10.1f %11.2f %11.3f\n' "$name" "${WALL[$name]}" "${CPU[$name]}" \
        "$(awk "BEGIN{print ${SIZE[$name]}/1e6}")" "$(awk "BEGIN{print ${RSS[$name]}/1024}")" \
        "$(awk "BEGIN{print ${WALL[$name]}/${WALL[umoci insert]}}")" \
        "$(awk "BEGIN{print ${SIZE[$name]}/${SIZE[umoci insert]}}")"
done
