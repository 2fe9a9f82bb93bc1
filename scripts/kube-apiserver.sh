#!/usr/bin/env bash
# kube-apiserver.sh: build a real kube-apiserver once, for the CLUSTER_PROVIDER=k8s
# cluster tests (actors/kube_test.go), and print its path.
#
# Debian ships no Kubernetes API server, but the Go module proxy serves the
# k8s.io/kubernetes module. Its zip lacks staging/ (nested modules), so the module is
# copied, its ./staging replace directives are dropped, the staging modules are
# required at their published versions (v0.<minor>.<patch>), and cmd/kube-apiserver is
# built. The binary goes to a git-ignored cache folder and is reused from then on;
# the first build takes several minutes on 2 cores (the Go build cache makes later
# ones in another checkout take about a minute).
#
#   scripts/kube-apiserver.sh            build if missing, print the binary's path
#   KUBE_VERSION=v1.31.4                 the k8s.io/kubernetes version (default)
#   KUBE_APISERVER_DIR=...               where the binary goes (default .devstack/kube-apiserver/<version>)
set -euo pipefail

version=${KUBE_VERSION:-v1.31.4}
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${KUBE_APISERVER_DIR:-$root/.devstack/kube-apiserver/$version}
bin=$out/kube-apiserver

if [[ -x $bin ]]; then
	echo "$bin"
	exit 0
fi
mkdir -p "$out"
exec 9>"$out/build.lock"
flock -w 3600 9 || { echo "kube-apiserver.sh: could not take $out/build.lock" >&2; exit 1; }
if [[ -x $bin ]]; then # built by another run meanwhile
	echo "$bin"
	exit 0
fi

log() { echo "kube-apiserver.sh: $*" >&2; }
start=$SECONDS
# Outside any module: a plain download of k8s.io/kubernetes into the module cache.
dir=$(cd / && GOFLAGS= go mod download -json "k8s.io/kubernetes@$version" |
	sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
[[ -n $dir && -d $dir ]] || { log "cannot download k8s.io/kubernetes@$version"; exit 1; }

src=$out/src
rm -rf "$src"
cp -r "$dir" "$src"
chmod -R u+w "$src"
cd "$src"
rm -f go.work go.work.sum
minor=${version#v1.} # 31.4
sed -i '/=> \.\/staging/d' go.mod
sed -i '/^replace ($/,/^)$/d' go.mod
sed -i -E "s#^(	k8s\.io/[a-z0-9-]+) v0\.0\.0\$#\1 v0.$minor#" go.mod
log "building kube-apiserver $version in $src (several minutes the first time)"
GOWORK=off GOFLAGS=-mod=mod go build -trimpath -o "$bin.tmp" ./cmd/kube-apiserver
mv "$bin.tmp" "$bin"
cd "$out"
rm -rf "$src"
log "built $bin in $((SECONDS - start))s"
echo "$bin"
