#!/usr/bin/env bash
# Push throughput of `imgbuild push` against `skopeo copy` of the same OCI layout to the
# same local registry (a fresh docker-registry on a loopback port for every run), printed
# as MB/s for each and the ratio of imgbuild's time to skopeo's (goal: at most 1.0).
#
# Usage: bench/push.sh [LAYERS] [MIB_PER_LAYER] [RUNS]   (defaults: 4 64 3)
# IMGBUILD=path/to/imgbuild picks the binary (default: target/release/imgbuild, built if
# missing).
set -euo pipefail
cd "$(dirname "$0")/.."

layers=${1:-4}
mib=${2:-64}
runs=${3:-3}
imgbuild=${IMGBUILD:-target/release/imgbuild}
for tool in docker-registry skopeo; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: run scripts/install-test-deps.sh" >&2; exit 1; }
done
if [[ ! -x $imgbuild ]]; then
  cargo build --release --locked --bin imgbuild
fi

work=$(mktemp -d)
registry_pid=
cleanup() {
  [[ -n $registry_pid ]] && kill "$registry_pid" 2>/dev/null && wait "$registry_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
host=127.0.0.1:$port

start_registry() {
  [[ -n $registry_pid ]] && { kill "$registry_pid"; wait "$registry_pid" 2>/dev/null || true; }
  rm -rf "$work/data"
  cat >"$work/config.yml" <<YAML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $work/data
http:
  addr: $host
YAML
  docker-registry serve "$work/config.yml" 2>>"$work/registry.log" &
  registry_pid=$!
  for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return
    sleep 0.05
  done
  echo "docker-registry did not start: $(cat "$work/registry.log")" >&2
  exit 1
}

# The image: LAYERS layers of incompressible data, as an OCI layout.
mkdir -p "$work/ctx"
{
  printf '[image]\nname = "bench"\ntags = ["1"]\n[from]\nscratch = true\n'
  for i in $(seq "$layers"); do
    head -c "$((mib * 1024 * 1024))" /dev/urandom >"$work/ctx/blob$i"
    printf '[[step]]\ncopy = "blob%s"\nto = "/blob%s"\n' "$i" "$i"
  done
} >"$work/ctx/bench.toml"
"$imgbuild" build "$work/ctx/bench.toml" --store "$work/store" -o "$work/out" --format oci 2>/dev/null
layout=$work/out/bench.oci
bytes=$(du -sb "$layout/blobs" | cut -f1)

now() { date +%s.%N; }
best_imgbuild=
best_skopeo=
rss=
for run in $(seq "$runs"); do
  start_registry
  t0=$(now)
  /usr/bin/time -f '%M' -o "$work/rss" "$imgbuild" push "$layout" "$host/bench:imgbuild$run" \
    --insecure-registry "$host" 2>/dev/null
  t1=$(now)
  start_registry
  t2=$(now)
  skopeo --insecure-policy copy -q --dest-tls-verify=false "oci:$layout:1" "docker://$host/bench:skopeo$run" >/dev/null
  t3=$(now)
  ti=$(echo "$t1 - $t0" | bc -l)
  ts=$(echo "$t3 - $t2" | bc -l)
  printf 'run %d: imgbuild %.2fs, skopeo %.2fs\n' "$run" "$ti" "$ts"
  if [[ -z $best_imgbuild ]] || (($(echo "$ti < $best_imgbuild" | bc -l))); then best_imgbuild=$ti; fi
  if [[ -z $best_skopeo ]] || (($(echo "$ts < $best_skopeo" | bc -l))); then best_skopeo=$ts; fi
  r=$(cat "$work/rss")
  if [[ -z $rss ]] || ((r > rss)); then rss=$r; fi
done

mb=$(echo "$bytes / 1000000" | bc -l)
printf 'image: %d layers, %.0f MB\n' "$layers" "$mb"
printf 'imgbuild push: %.1f MB/s (best of %d), max RSS %d MiB\n' "$(echo "$mb / $best_imgbuild" | bc -l)" "$runs" "$((rss / 1024))"
printf 'skopeo copy:   %.1f MB/s (best of %d)\n' "$(echo "$mb / $best_skopeo" | bc -l)" "$runs"
printf 'ratio imgbuild/skopeo time: %.2f (goal: at most 1.0)\n' "$(echo "$best_imgbuild / $best_skopeo" | bc -l)"
