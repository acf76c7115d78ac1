#!/usr/bin/env bash
# Benchmark: treeport beside umoci, `tar | gzip` and ostree-ext on the same
# real trees, in one run. Prints wall time, CPU time, output size and peak
# memory of each, the ratios, and each speed goal with its measured ratio.
# Not a test: the numbers are for people.
#
#   tests/bench.sh            (make bench builds what it needs first)
#   RUNS=5 tests/bench.sh     best of 5 rounds (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
WORK=${BENCH_DIR:-target/bench}
TREEPORT=${TREEPORT:-target/release/treeport}
OSTREE_EXT=${OSTREE_EXT:-target/release/examples/ostree_ext_cli}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)

for tool in umoci mmdebstrap ostree docker-registry /usr/bin/time gzip tar; do
    command -v "$tool" >/dev/null || { echo "missing $tool: run make deps" >&2; exit 1; }
done
[ -x "$TREEPORT" ] || cargo build --release -p treeport-cli
# ostree-ext's CLI, from the ostree-ext crate on crates.io.
[ -x "$OSTREE_EXT" ] || cargo build --release -p treeport-tests --example ostree_ext_cli

if [ ! -d "$WORK/rootfs" ]; then
    echo "building a minbase bookworm tree with mmdebstrap..." >&2
    mmdebstrap --variant=minbase --mode=root --quiet bookworm "$WORK/rootfs.tmp" "$MIRROR"
    mv "$WORK/rootfs.tmp" "$WORK/rootfs"
fi
R=$WORK/rootfs
if [ ! -d "$WORK/repo" ]; then
    echo "committing it to an OSTree repository..." >&2
    rm -rf "$WORK/nodev" && cp -a "$R" "$WORK/nodev" && find "$WORK/nodev/dev" -mindepth 1 -delete
    ostree init --repo="$WORK/repo.tmp" --mode=archive
    ostree commit --repo="$WORK/repo.tmp" --branch=bench --tree=dir="$WORK/nodev" >/dev/null
    mv "$WORK/repo.tmp" "$WORK/repo"
fi
if [ ! -d "$WORK/big" ]; then
    echo "making a tree ten times larger (ten copies)..." >&2
    mkdir -p "$WORK/big.tmp"
    for i in $(seq 0 9); do cp -a "$WORK/nodev" "$WORK/big.tmp/copy$i"; done
    mv "$WORK/big.tmp" "$WORK/big"
fi
files=$(find "$R" | wc -l)
bytes=$(du -sb "$R" | cut -f1)
echo "tree: $R, $files entries, $((bytes / 1000000)) MB; large tree: $(du -sb "$WORK/big" | cut -f1 | awk '{print int($1/1e6)}') MB; $(nproc) cores; best of $RUNS rounds, each running every case once"
echo

# measure NAME SETUP COMMAND OUTPUT: adds a case: SETUP, then COMMAND
# (timed); OUTPUT is a file, or a directory of blobs, whose size is reported.
# run_cases runs every case once per round, RUNS rounds, so cases compared in
# a ratio see the machine in the same state (a shared machine's speed drifts
# over minutes); it keeps each case's fastest wall time with its CPU time,
# and its largest peak memory.
declare -A WALL CPU RSS SIZE SETUP CMD OUTPUT DIGESTS
ORDER=()
measure() {
    ORDER+=("$1")
    SETUP[$1]=$2
    CMD[$1]=$3
    OUTPUT[$1]=$4
    RSS[$1]=0
}
run_cases() {
    local name wall user sys maxrss output
    for _ in $(seq "$RUNS"); do
        for name in "${ORDER[@]}"; do
            bash -c "${SETUP[$name]}"
            sync
            /usr/bin/time -f '%e %U %S %M' -o "$WORK/time.txt" bash -c "${CMD[$name]}" >/dev/null 2>"$WORK/stderr.txt" || {
                echo "$name failed:" >&2; cat "$WORK/stderr.txt" >&2; exit 1; }
            read -r wall user sys maxrss < "$WORK/time.txt"
            if [ -z "${WALL[$name]:-}" ] || awk "BEGIN{exit !($wall < ${WALL[$name]})}"; then
                WALL[$name]=$wall
                CPU[$name]=$(awk "BEGIN{printf \"%.2f\", $user + $sys}")
            fi
            [ "$maxrss" -gt "${RSS[$name]}" ] && RSS[$name]=$maxrss
            # Every timed run of an OCI layout records its manifest digest.
            index=$(dirname "${OUTPUT[$name]}")/index.json
            if [[ ${CMD[$name]} == "$TP"* ]] && [ -f "$index" ]; then
                DIGESTS[$name]="${DIGESTS[$name]:-} $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][-1]["digest"])' "$index")"
            fi
        done
    done
    for name in "${ORDER[@]}"; do
        output=${OUTPUT[$name]}
        if [ -d "$output" ]; then
            SIZE[$name]=$(find "$output" -type f -size +100k -printf '%s\n' | awk '{s+=$1} END{print s+0}')
        elif [ -f "$output" ]; then
            SIZE[$name]=$(stat -c %s "$output")
        else
            SIZE[$name]=0
        fi
    done
}

# A registry for the several-sinks case.
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$WORK/registry"
cat > "$WORK/registry/config.yml" <<YAML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $WORK/registry/storage}, delete: {enabled: true}}
http: {addr: 127.0.0.1:$PORT}
YAML
docker-registry serve "$WORK/registry/config.yml" >/dev/null 2>&1 &
REGISTRY_PID=$!
trap 'kill $REGISTRY_PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done

TP="$TREEPORT export -q --timestamp 1700000000"
measure "treeport gzip" "rm -rf $WORK/tp" "$TP --source rootfs:$R --sink oci:$WORK/tp:bench" "$WORK/tp/blobs"
measure "gzip + sbom" "rm -rf $WORK/tps" "$TP --source rootfs:$R --transform sbom --sink oci:$WORK/tps:bench" "$WORK/tps/blobs"
# The same, signed with a cosign key in cosign's encrypted format (its
# scrypt work included), the image and its SBOM artifact.
if [ ! -f "$WORK/cosign.key" ]; then
    if [ -x target/pyenv/bin/python ]; then
        KEY_PASSWORD=bench target/pyenv/bin/python tests/tools/keys.py cosign "$WORK/cosign"
    else
        openssl ecparam -genkey -name prime256v1 | openssl pkcs8 -topk8 -nocrypt -out "$WORK/cosign.key"
    fi
fi
export COSIGN_PASSWORD=bench
measure "sbom + signed" "rm -rf $WORK/tpsig" "$TP --source rootfs:$R --transform sbom --sign-key $WORK/cosign.key --sink oci:$WORK/tpsig:bench" "$WORK/tpsig/blobs"
measure "treeport zstd" "rm -rf $WORK/tpz" "$TP --compression zstd --source rootfs:$R --sink oci:$WORK/tpz:bench" "$WORK/tpz/blobs"
measure "umoci insert" "rm -rf $WORK/um && umoci init --layout $WORK/um && umoci new --image $WORK/um:bench" \
    "umoci insert --image $WORK/um:bench $R /" "$WORK/um/blobs"
measure "tar | gzip -6" "rm -f $WORK/tree.tar.gz" \
    "tar -C $R --numeric-owner --xattrs -cf - . | gzip -6 > $WORK/tree.tar.gz" "$WORK/tree.tar.gz"
measure "treeport ostree" "rm -rf $WORK/tpo" "$TP --source ostree:$WORK/repo:bench --sink oci:$WORK/tpo:bench" "$WORK/tpo/blobs"
measure "ostree-ext encap" "rm -rf $WORK/oe" \
    "$OSTREE_EXT container encapsulate --repo $WORK/repo bench oci:$WORK/oe:latest" "$WORK/oe/blobs"
measure "treeport 10x" "rm -rf $WORK/tpb" "$TP --source rootfs:$WORK/big --sink oci:$WORK/tpb:bench" "$WORK/tpb/blobs"
# Incremental: a cold chunked export with a cache, then one package changed.
rm -rf "$WORK/incr" && cp -a "$R" "$WORK/incr"
# Each round starts from the same tree and changes the same file the same
# way, so every round's images are the same (checked below).
HOSTNAME_DOC=usr/share/doc/hostname/copyright
measure "chunked cold" "rm -rf $WORK/cache $WORK/tpc; cp -p $R/$HOSTNAME_DOC $WORK/incr/$HOSTNAME_DOC" \
    "$TP --transform chunk --cache $WORK/cache --source rootfs:$WORK/incr --sink oci:$WORK/tpc:bench" "$WORK/tpc/blobs"
measure "chunked 1 pkg" "rm -rf $WORK/tpc; cp -p $R/$HOSTNAME_DOC $WORK/incr/$HOSTNAME_DOC; echo change >> $WORK/incr/$HOSTNAME_DOC" \
    "$TP --transform chunk --cache $WORK/cache --source rootfs:$WORK/incr --sink oci:$WORK/tpc:bench" "$WORK/tpc/blobs"
# Images as sources: the minbase tree as a one-layer image, rechunked into
# package layers, beside the same chunked export straight from the tree.
if [ ! -d "$WORK/single" ]; then
    $TREEPORT export -q --timestamp 1700000000 --source rootfs:$R --sink oci:$WORK/single:bench
fi
measure "chunk from rootfs" "rm -rf $WORK/cr" "$TP --transform chunk --source rootfs:$R --sink oci:$WORK/cr:bench" "$WORK/cr/blobs"
measure "rechunk image" "rm -rf $WORK/ri" "$TP --transform chunk --source oci:$WORK/single:bench --sink oci:$WORK/ri:bench" "$WORK/ri/blobs"
# chunkah (coreos/chunkah 0.6.0, built from ../shared/anchors) on the same
# tree, when CHUNKAH names its binary.
if [ -n "${CHUNKAH:-}" ] && [ -x "$CHUNKAH" ]; then
    measure "chunkah" "rm -rf $WORK/ck" \
        "SOURCE_DATE_EPOCH=1700000000 $CHUNKAH build --rootfs $R --prune /dev/ --compressed --max-layers 64 --output oci:$WORK/ck" "$WORK/ck/blobs"
fi
# A second machine with the registry-shared cache: the first machine's
# export (setup, untimed) fills docker://.../cache/layers from one copy of
# the tree; the timed run exports another copy (other inodes, same
# content) to another repository of the same registry, mounting the blobs.
[ -d "$WORK/machine2" ] || cp -a "$R" "$WORK/machine2"
REG=127.0.0.1:$PORT
measure "shared cache 2nd" "$TP --transform chunk --cache docker://$REG/cache/layers:bench --source rootfs:$R --sink docker://$REG/first/image:1 --tls-verify=false" \
    "TREEPORT_CACHE_DIR=$WORK/machine2-state $TP --transform chunk --cache docker://$REG/cache/layers:bench --source rootfs:$WORK/machine2 --sink docker://$REG/second/image:1 --tls-verify=false" ""
measure "3 sinks" "rm -rf $WORK/ms $WORK/ms.tar $WORK/registry/storage" \
    "$TP --source rootfs:$R --sink oci:$WORK/ms:bench --sink docker-archive:$WORK/ms.tar:bench:1 --sink docker://127.0.0.1:$PORT/bench/image:1 --tls-verify=false" "$WORK/ms/blobs"
# A larger Debian tree, about 1 GB (a minbase tree with a toolchain, an
# LLVM and Python): treeport's chunked export beside umoci and ostree-ext.
L=$WORK/large
if [ ! -d "$L" ]; then
    echo "building a ~1 GB Debian tree with mmdebstrap..." >&2
    mmdebstrap --variant=minbase --mode=root --quiet \
        --include=build-essential,gdb,python3-full,perl,git,clang-14,llvm-14-dev,libboost-dev,vim \
        bookworm "$L.tmp" "$MIRROR"
    find "$L.tmp/dev" -mindepth 1 -delete
    mv "$L.tmp" "$L"
fi
if [ ! -d "$WORK/large-repo" ]; then
    ostree init --repo="$WORK/large-repo.tmp" --mode=archive
    ostree commit --repo="$WORK/large-repo.tmp" --branch=large --tree=dir="$L" >/dev/null
    mv "$WORK/large-repo.tmp" "$WORK/large-repo"
fi
measure "1GB chunked" "rm -rf $WORK/lt" "$TP --transform chunk --source rootfs:$L --sink oci:$WORK/lt:bench" "$WORK/lt/blobs"
measure "1GB umoci" "rm -rf $WORK/lu && umoci init --layout $WORK/lu && umoci new --image $WORK/lu:bench" \
    "umoci insert --image $WORK/lu:bench $L /" "$WORK/lu/blobs"
measure "1GB ostree-ext" "rm -rf $WORK/lo" \
    "$OSTREE_EXT container encapsulate --repo $WORK/large-repo large oci:$WORK/lo:latest" "$WORK/lo/blobs"
run_cases

printf '%-17s %8s %8s %10s %9s %11s %11s\n' case wall_s cpu_s size_MB peak_MiB wall/umoci size/umoci
for name in "${ORDER[@]}"; do
    printf '%-17s %8.2f %8.2f %10.1f %9.1f %11.2f %11.3f\n' "$name" "${WALL[$name]}" "${CPU[$name]}" \
        "$(awk "BEGIN{print ${SIZE[$name]}/1e6}")" "$(awk "BEGIN{print ${RSS[$name]}/1024}")" \
        "$(awk "BEGIN{print ${WALL[$name]}/${WALL[umoci insert]}}")" \
        "$(awk "BEGIN{print ${SIZE[$name]}/${SIZE[umoci insert]}}")"
done
echo
ratio() { awk "BEGIN{printf \"%.2f\", $1/$2}"; }
peak=0
for name in "${ORDER[@]}"; do
    case $name in treeport*|chunked*|"3 sinks") [ "${RSS[$name]}" -gt "$peak" ] && peak=${RSS[$name]};; esac
done
echo "goal                                   target   measured"
printf '%-38s %7s %9s\n' "rootfs gzip wall / umoci" "<= 0.50" "$(ratio "${WALL[treeport gzip]}" "${WALL[umoci insert]}")"
printf '%-38s %7s %9s\n' "export with sbom / without" "<= 1.10" "$(ratio "${WALL[gzip + sbom]}" "${WALL[treeport gzip]}")"
printf '%-38s %7s %9s\n' "export with sbom + signature / without" "<= 1.10" "$(ratio "${WALL[sbom + signed]}" "${WALL[treeport gzip]}")"
printf '%-38s %7s %9s\n' "rootfs gzip size / umoci" "<= 1.00" "$(ratio "${SIZE[treeport gzip]}" "${SIZE[umoci insert]}")"
printf '%-38s %7s %9s\n' "ostree gzip wall / ostree-ext" "<= 0.15" "$(ratio "${WALL[treeport ostree]}" "${WALL[ostree-ext encap]}")"
printf '%-38s %7s %9s\n' "zstd wall / umoci gzip" "<= 0.30" "$(ratio "${WALL[treeport zstd]}" "${WALL[umoci insert]}")"
printf '%-38s %7s %9s\n' "peak memory, MiB (any treeport run)" "<= 64" "$(awk "BEGIN{printf \"%.1f\", $peak/1024}")"
printf '%-38s %7s %9s\n' "peak memory 10x tree, MiB" "<= 64" "$(awk "BEGIN{printf \"%.1f\", ${RSS[treeport 10x]}/1024}")"
printf '%-38s %7s %9s\n' "one package changed / cold (cache)" "<= 0.05" "$(ratio "${WALL[chunked 1 pkg]}" "${WALL[chunked cold]}")"
printf '%-38s %7s %9s\n' "3 sinks CPU (treeport's own) / 1 sink" "<= 1.10" "$(ratio "${CPU[3 sinks]}" "${CPU[treeport gzip]}")"
printf '%-38s %7s %9s\n' "3 sinks wall (with the registry's)" "(info)" "$(ratio "${WALL[3 sinks]}" "${WALL[treeport gzip]}")"
printf '%-38s %7s %9s\n' "shared cache, 2nd machine / cold" "(info)" "$(ratio "${WALL[shared cache 2nd]}" "${WALL[chunk from rootfs]}")"
printf '%-38s %7s %9s\n' "1 GB tree chunked wall / umoci" "(info)" "$(ratio "${WALL[1GB chunked]}" "${WALL[1GB umoci]}")"
printf '%-38s %7s %9s\n' "1 GB tree chunked wall / ostree-ext" "(info)" "$(ratio "${WALL[1GB chunked]}" "${WALL[1GB ostree-ext]}")"
printf '%-38s %7s %9s\n' "peak memory 1 GB tree, MiB" "<= 64" "$(awk "BEGIN{printf \"%.1f\", ${RSS[1GB chunked]}/1024}")"
printf '%-38s %7s %9s\n' "rechunk image / chunk from rootfs" "<= 1.20" "$(ratio "${WALL[rechunk image]}" "${WALL[chunk from rootfs]}")"
printf '%-38s %7s %9s\n' "peak memory rechunk, MiB" "<= 64" "$(awk "BEGIN{printf \"%.1f\", ${RSS[rechunk image]}/1024}")"

# The hello update: the bytes a client pulls to go from the minbase image to
# the minbase+hello image, chunked by treeport (from images) and by chunkah.
H=$WORK/rootfs-hello
if [ ! -d "$H" ]; then
    mmdebstrap --variant=minbase --include=hello --mode=root --quiet bookworm "$H.tmp" "$MIRROR"
    mv "$H.tmp" "$H"
fi
pull_bytes() {  # OLD_LAYOUT NEW_LAYOUT: bytes of NEW's layers OLD lacks
    python3 - "$1" "$2" <<'PY'
import json, sys
def layers(d):
    idx = json.load(open(d + "/index.json"))
    m = json.load(open(d + "/blobs/sha256/" + idx["manifests"][-1]["digest"].split(":")[1]))
    return {l["digest"]: l["size"] for l in m["layers"]}
old, new = layers(sys.argv[1]), layers(sys.argv[2])
print(sum(s for d, s in new.items() if d not in old), len([d for d in new if d not in old]), len(new))
PY
}
rm -rf "$WORK/hs" "$WORK/rh"
$TREEPORT export -q --timestamp 1700000000 --source rootfs:$H --sink oci:$WORK/hs:bench
/usr/bin/time -f '%e %M' -o "$WORK/time.txt" $TP --transform chunk --source oci:$WORK/hs:bench --sink oci:$WORK/rh:bench
read -r tp_wall tp_rss < "$WORK/time.txt"
read -r tp_bytes tp_changed tp_layers <<< "$(pull_bytes "$WORK/ri" "$WORK/rh")"
echo
echo "hello update (bytes a client pulls)     treeport: $tp_bytes in $tp_changed of $tp_layers layers (rechunk ${tp_wall} s, $((tp_rss / 1024)) MiB)"
if [ -n "${CHUNKAH:-}" ] && [ -x "$CHUNKAH" ]; then
    rm -rf "$WORK/ckh"
    /usr/bin/time -f '%e %M' -o "$WORK/time.txt" env SOURCE_DATE_EPOCH=1700000000 "$CHUNKAH" build --rootfs "$H" --prune /dev/ --compressed --max-layers 64 --output "oci:$WORK/ckh" >/dev/null 2>&1
    read -r ck_wall ck_rss < "$WORK/time.txt"
    read -r ck_bytes ck_changed ck_layers <<< "$(pull_bytes "$WORK/ck" "$WORK/ckh")"
    echo "                                         chunkah:  $ck_bytes in $ck_changed of $ck_layers layers (${ck_wall} s, $((ck_rss / 1024)) MiB)"
    printf '%-38s %7s %9s\n' "hello update bytes / chunkah's" "< 1.00" "$(ratio "$tp_bytes" "$ck_bytes")"
    printf '%-38s %7s %9s\n' "rechunk wall / chunkah's" "< 1.00" "$(ratio "${WALL[rechunk image]}" "${WALL[chunkah]}")"
else
    echo "(set CHUNKAH=/path/to/chunkah to compare with chunkah)"
fi
echo
# Same input, same bytes: every timed run of a case wrote the same image.
echo "reproducibility (manifest digest of every timed run)"
repro=yes
for name in "${ORDER[@]}"; do
    [ -n "${DIGESTS[$name]:-}" ] || continue
    runs=$(echo ${DIGESTS[$name]} | wc -w)
    distinct=$(echo ${DIGESTS[$name]} | tr ' ' '\n' | sort -u | wc -l)
    if [ "$distinct" = 1 ]; then
        printf '%-17s %d runs, one digest %s\n' "$name" "$runs" "$(echo ${DIGESTS[$name]} | cut -d' ' -f1 | cut -c1-19)"
    else
        printf '%-17s %d runs, %d DIFFERENT digests\n' "$name" "$runs" "$distinct"
        repro=no
    fi
done
printf '%-38s %7s %9s\n' "every run's digest equal" "yes" "$repro"
